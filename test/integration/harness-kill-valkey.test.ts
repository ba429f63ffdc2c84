import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createWorld, popInto, pruneKeeping, pushBuild, type World } from '../harness/actors'
import { destViolations, type Violation } from '../harness/invariants'
import { expectKillsHold } from '../harness/kill'
import { broken, enumerateWindows } from '../harness/scheduler'
import { tempDir } from '../helpers/fs'

describe('the CLI killed -9 on the Valkey store (Redis behind the RESP hold proxy)', () => {
  it('push killed at each request type: I1–I4 hold, a later push and prune succeed', async () => {
    expect(await expectKillsHold('valkey', 'push')).toBeGreaterThanOrEqual(8)
  }, 240_000)

  it('prune killed at each request type: I1–I4 hold, a later push and prune succeed', async () => {
    expect(await expectKillsHold('valkey', 'prune')).toBeGreaterThanOrEqual(6)
  }, 240_000)
})

describe('a prune stopped between its deletes on Valkey', () => {
  it('leaves pop working: it leaves out the files only the dying build named that are already gone', async () => {
    const windows = await enumerateWindows<World>(
      {
        async setup() {
          const world = await createWorld('valkey')
          await pushBuild(world, 'v1', 100)
          await pushBuild(world, 'v2', 200)
          return world
        },
        held: (world, gate) => pruneKeeping(world, 1, gate),
        others: async () => {},
        async check(world) {
          const dest = join(await tempDir(), 'www')
          const refused = await popInto(world, dest).then(
            () => [],
            (error: Error): Violation[] => [{ invariant: 'I1', detail: `pop refused: ${error.message}` }],
          )
          return [...refused, ...(await destViolations(dest, world.builds))]
        },
        teardown: (world) => world.close(),
      },
      { fail: () => new Error('injected failure') },
    )
    expect(windows.filter((window) => window.reached && window.type.startsWith('delete:')).length).toBeGreaterThanOrEqual(2)
    expect(broken(windows)).toEqual([])
  })
})
