import { describe, expect, it } from 'vitest'
import { takeLease } from '../../src/core/store/leases'
import type { Store } from '../../src/core/store/store'
import { withRetry } from '../../src/core/util/concurrency'
import { createLocalStore } from '../../src/stores/local'
import { tempDir, tree } from '../helpers/fs'

describe('leases (issue 19 item 3)', () => {
  it('a lease whose first write fails after it landed is retried under the same key: one lease is left, not one per attempt', async () => {
    const root = await tempDir()
    const local = createLocalStore(root)
    const written: string[] = []
    // A slow store: the write lands, then its answer is lost.
    const store: Store = {
      ...local,
      async put(key, body, options) {
        const result = await local.put(key, body, options)
        written.push(key)
        if (written.length === 1) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
        return result
      },
    }
    const lease = await takeLease(store, 'inventory', 'push', ['a.js'], (attempt) =>
      withRetry(attempt, { retries: 2, isTransient: () => true, baseDelayMs: 1 }),
    )
    expect(new Set(written).size).toBe(1)
    expect(await tree(root)).toEqual([written[0]])
    await lease.release()
    expect(await tree(root)).toEqual([])
  })
})
