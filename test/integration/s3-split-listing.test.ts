import http from 'node:http'
import { describe, expect, it } from 'vitest'
import { visitEntriesSplit } from '../../src/core/store/builds'
import type { Store } from '../../src/core/store/store'
import { forEachLimited } from '../../src/core/util/concurrency'
import { createS3Store } from '../../src/stores/s3'
import { forward, listenForTest } from '../helpers/forward'
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

/** A proxy in front of the S3 server that counts the keys its listings answer and the listing requests. */
async function startKeyCounter(): Promise<{ endpoint: string; counts: { keys: number; pages: number } }> {
  const counts = { keys: 0, pages: 0 }
  const target = new URL(s3StoreOptions().endpoint!)
  const agent = new http.Agent({ keepAlive: true })
  const server = http.createServer((req, res) => {
    if (req.url?.includes('list-type=2')) {
      counts.pages++
      // Counted as the answer goes through: a key is one <Key> element (listed URL-encoded, no key holds a `<`).
      let body = ''
      res.on('pipe', (answer) => {
        answer.on('data', (chunk: Buffer) => {
          body += chunk.toString()
        })
        answer.on('end', () => {
          counts.keys += body.split('<Key>').length - 1
        })
      })
    }
    forward(req, res, target, agent)
  })
  return { endpoint: await listenForTest(server, agent), counts }
}

describe('a listing split at known names', () => {
  it('lists 2,000 known keys in one page per range, and at most 10% more keys, when the bucket holds a few more', async () => {
    const bucket = await createBucket()
    const plain = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
    const { endpoint, counts } = await startKeyCounter()
    const counted = createS3Store(s3StoreUrl(bucket), { ...s3StoreOptions(), endpoint })
    try {
      const names = Array.from({ length: 2000 }, (_, index) => `assets/${index.toString(36).padStart(3, '0')}.js`)
      // An older build's files, spread among the known ones: 2% more keys than known.
      const older = names.filter((_, index) => index % 50 === 0).map((name) => `${name}.old`)
      await forEachLimited([...names, ...older], 32, (name) => plain.put(`data/shop/${name}`, Buffer.from('x')))
      const keys = await visited(counted, names)

      expect(keys.length).toBe(names.length + older.length)
      expect(counts.pages).toBe(3)
      expect(counts.keys).toBeLessThanOrEqual(names.length * 1.1)
    } finally {
      await Promise.all([plain.close(), counted.close()])
    }
  }, 180_000)

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
