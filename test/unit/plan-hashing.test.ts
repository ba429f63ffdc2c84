import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import type { Store, StoreEntry } from '../../src/core/store/store'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { tempDir, writeTree } from '../helpers/fs'

const LARGE = 8 * 1024 * 1024

/** Bytes this process read through read(2) so far. */
const bytesRead = async () => Number(/^rchar: (\d+)$/m.exec(await readFile('/proc/self/io', 'utf8'))![1])

/** Whether this process reads `bytes` more within `ms`. */
async function readsWithin(bytes: number, ms: number): Promise<boolean> {
  const before = await bytesRead()
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(10)) if ((await bytesRead()) - before >= bytes) return true
  return false
}

/**
 * `store` listed in ranges (as S3 is), the first range held back until this process read `LARGE`
 * bytes (or 10 s passed): `read()` says whether it did.
 */
function firstRangeHeldBack(store: Store) {
  let readMeanwhile: boolean | undefined
  const gated: Store = {
    ...store,
    async *listAfter(prefix: string, startAfter?: string): AsyncIterable<StoreEntry> {
      if (startAfter === undefined) readMeanwhile = await readsWithin(LARGE, 10_000)
      // A range of S3's listing, in its order: the local store lists in no particular order.
      const entries: StoreEntry[] = []
      for await (const entry of store.list(prefix)) if (startAfter === undefined || entry.key > startAfter) entries.push(entry)
      yield* entries.sort((a, b) => (a.key < b.key ? -1 : 1))
    },
  }
  return { gated, read: () => readMeanwhile }
}

describe('the plan of a build the store holds', () => {
  it.runIf(existsSync('/proc/self/io'))(
    'hashes a large file as soon as a range of the data listing names it, before the other ranges answer',
    async () => {
      // More files than one range takes (800): the listing is cut in two; the large file sorts last, into the second.
      const files: Record<string, string | Uint8Array> = { 'fed-mods.json': '{}', 'zz-large.bin': new Uint8Array(LARGE).fill(7) }
      for (let i = 0; i < 1000; i++) files[`js/chunk-${i}.js`] = `console.log(${i})`
      const dir = await writeTree(await tempDir(), files)
      const store = createLocalStore(await tempDir())
      const push = async (on: Store, timestamp: number) =>
        populate({ store: on, options: resolveOptions({ app: 'shop', store: 'unused', timestamp }, {}), files: await collectFiles(dir) })
      try {
        await push(store, 1000)
        const { gated, read } = firstRangeHeldBack(store)
        expect(await push(gated, 2000)).toMatchObject({ uploaded: 0, unchanged: 1002 })
        expect(read()).toBe(true)
      } finally {
        await store.close()
      }
    },
    60_000,
  )
})
