import { describe, expect, it } from 'vitest'
import { expectKillsHold } from '../harness/kill'

describe('the CLI killed -9 on the local store (requests held by fs-gate.mjs)', () => {
  it('push killed at each request type: I1–I4 hold, a later push and prune succeed', async () => {
    expect(await expectKillsHold('local', 'push')).toBeGreaterThanOrEqual(8)
  }, 240_000)

  it('prune killed at each request type: I1–I4 hold, a later push and prune succeed', async () => {
    expect(await expectKillsHold('local', 'prune')).toBeGreaterThanOrEqual(6)
  }, 240_000)
})
