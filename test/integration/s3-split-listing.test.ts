import { describe, expect, it } from 'vitest'
import { visitEntriesSplit } from '../../src/core/store/builds'
import type { Store } from '../../src/core/store/store'
import { forEachLimited } from '../../src/core/util/concurrency'
import { createS3Store } from '../../src/stores/s3'
import { createBucket, s3StoreOptions, s3StoreUrl } from '../helpers/s3'

/**
 * A push lists its data in ranges at once, cut at the build's names: every key comes once, in S3's
 * byte order, whatever the names' characters (JavaScript sorts UTF-16 units, S3 UTF-8 bytes).
 */
const NAMES = Array.from({ length: 1700 }, (_, index) => {
  // JavaScript sorts 😀 (a surrogate pair from U+D83D) before U+E000, S3 after it: the cuts fall in both.
  const mark = index % 2 === 0 ? '😀' : '\uE000'
  return `${mark}/${index.toString(36)}-é.js`
})

async function visited(store: Pick<Store, 'list' | 'listAfter' | 'isTransient' | 'display'>, names: readonly string[]): Promise<string[]> {
  const keys: string[] = []
  await visitEntriesSplit(store as Store, 'data/shop/', names, 0, (entry) => keys.push(entry.key))
  return keys
}

describe('a listing split at known names', () => {
  it('visits every key under the prefix once, those no name foresaw too, on S3 and on a server that ignores StartAfter', async () => {
    const store = createS3Store(s3StoreUrl(await createBucket()), s3StoreOptions())
    try {
      const extra = ['!first.js', '\u{10FFFF}last.js', 'é/older.js']
      await forEachLimited([...NAMES, ...extra], 32, (name) => store.put(`data/shop/${name}`, Buffer.from('x')))
      const expected = [...NAMES, ...extra].map((name) => `data/shop/${name}`).sort()

      expect((await visited(store, NAMES)).sort()).toEqual(expected)
      // A server that ignores StartAfter lists each range from the start: what it sends again is left out.
      const ignoring = { ...store, listAfter: (prefix: string) => store.list(prefix) }
      expect((await visited(ignoring, NAMES)).sort()).toEqual(expected)
    } finally {
      await store.close()
    }
  }, 180_000)
})
