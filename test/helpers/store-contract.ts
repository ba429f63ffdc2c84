import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { readAll } from '../../src/core/store/builds'
import { PreconditionFailed, type Store } from '../../src/core/store/store'
import { forEachLimited } from '../../src/core/util/concurrency'

export interface StoreContractOptions {
  /** Lists and deletes more than 1000 keys (one S3 page, one DeleteObjects batch). Slow on some servers. */
  manyKeys?: boolean
  /** Driver-specific tests, run in the same suite; `store()` is the open store of the current test. */
  additionalTests?: (store: () => Store) => void
}

/** Above the S3 store's 8 MiB multipart threshold, so the file is streamed in parts. */
const LARGE_FILE_BYTES = 9 * 1024 * 1024 + 123
const MANY_KEYS = 1100

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

async function readKey(store: Store, key: string): Promise<Buffer | undefined> {
  const stream = await store.read(key)
  return stream && readAll(stream)
}

async function listed(store: Store, prefix: string): Promise<{ key: string; size?: number }[]> {
  const entries: { key: string; size?: number }[] = []
  for await (const { key, size } of store.list(prefix)) entries.push({ key, size })
  return entries.sort((a, b) => (a.key < b.key ? -1 : 1))
}

/**
 * The behaviour core relies on, for every store driver, against a real backend. `open` returns
 * an empty store (a fresh bucket, directory or database) each time; the suite closes it.
 */
export function testStoreContract(name: string, open: () => Promise<Store>, { manyKeys = false, additionalTests }: StoreContractOptions = {}): void {
  describe(`store contract: ${name}`, () => {
    let store: Store
    let directory: string
    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), 'push-cache-contract-'))
    })
    afterAll(async () => {
      await rm(directory, { recursive: true, force: true })
    })
    beforeEach(async () => {
      store = await open()
    })
    afterEach(async () => {
      await store.close()
    })

    const fileOf = async (bytes: Buffer) => {
      const file = join(directory, randomBytes(6).toString('hex'))
      await writeFile(file, bytes)
      return { file, size: bytes.length }
    }

    it('reads back bytes put from memory', async () => {
      await store.put('data/app/a.txt', Buffer.from('hello'))
      expect((await readKey(store, 'data/app/a.txt'))?.toString()).toBe('hello')
    })

    it('reads back a file put from disk, and an overwrite replaces it', async () => {
      await store.put('data/app/b.js', await fileOf(Buffer.from('first')))
      await store.put('data/app/b.js', await fileOf(Buffer.from('second')))
      expect((await readKey(store, 'data/app/b.js'))?.toString()).toBe('second')
    })

    it('streams a file larger than the multipart threshold intact', async () => {
      const bytes = randomBytes(LARGE_FILE_BYTES)
      await store.put('data/app/large.bin', await fileOf(bytes))
      const back = await readKey(store, 'data/app/large.bin')
      expect(back?.length).toBe(bytes.length)
      expect(sha256(back!)).toBe(sha256(bytes))
    })

    it('keeps keys with spaces and non-ASCII characters as they are', async () => {
      const key = 'data/app/dir with space/Ünïcødé 文件 (1).txt'
      await store.put(key, Buffer.from('ü'))
      expect((await readKey(store, key))?.toString()).toBe('ü')
      expect(await listed(store, 'data/app/dir with space/')).toEqual([{ key, size: expect.toBeOneOf([2, undefined]) }])
    })

    it('reads a missing key as undefined', async () => {
      expect(await store.read('data/app/missing.js')).toBeUndefined()
    })

    it('lists exactly the keys under a prefix, a partial segment included', async () => {
      for (const key of ['data/app/x.js', 'data/app/nested/y.css', 'data/application/z.js', 'data/other/w.js', 'manifests/app/1'])
        await store.put(key, Buffer.from(key))
      expect((await listed(store, 'data/app/')).map((entry) => entry.key)).toEqual(['data/app/nested/y.css', 'data/app/x.js'])
      expect((await listed(store, 'data/app')).map((entry) => entry.key)).toEqual(['data/app/nested/y.css', 'data/app/x.js', 'data/application/z.js'])
      expect(await listed(store, 'data/nothing/')).toEqual([])
      expect((await listed(store, 'data/app/x'))[0]?.size).toBeOneOf([Buffer.byteLength('data/app/x.js'), undefined])
    })

    it('deletes keys, ignores missing ones and an empty list', async () => {
      await store.put('data/app/keep.js', Buffer.from('k'))
      await store.put('data/app/gone.js', Buffer.from('g'))
      await store.delete(['data/app/gone.js', 'data/app/never-existed.js'])
      await store.delete([])
      expect(await store.read('data/app/gone.js')).toBeUndefined()
      expect((await listed(store, 'data/')).map((entry) => entry.key)).toEqual(['data/app/keep.js'])
    })

    if (manyKeys)
      it(`lists and deletes ${MANY_KEYS} keys, across pages and batches`, async () => {
        const keys = Array.from({ length: MANY_KEYS }, (_, index) => `data/many/${String(index).padStart(4, '0')}.js`)
        await forEachLimited(keys, 32, (key) => store.put(key, Buffer.from('x')))
        expect((await listed(store, 'data/many/')).map((entry) => entry.key)).toEqual(keys)
        await store.delete(keys)
        expect(await listed(store, 'data/many/')).toEqual([])
      })

    it('writes and deletes on a condition, and says when it does not hold', async (context) => {
      if (!store.conditionalWrites) return context.skip()
      const first = await store.put('locks/app/writer', Buffer.from('one'), { ifNoneMatch: '*' })
      await expect(store.put('locks/app/writer', Buffer.from('two'), { ifNoneMatch: '*' })).rejects.toBeInstanceOf(PreconditionFailed)
      const second = await store.put('locks/app/writer', Buffer.from('three'), { ifMatch: first.etag })
      await expect(store.put('locks/app/writer', Buffer.from('four'), { ifMatch: first.etag })).rejects.toBeInstanceOf(PreconditionFailed)
      await expect(store.delete(['locks/app/writer'], { ifMatch: first.etag })).rejects.toBeInstanceOf(PreconditionFailed)
      expect((await readKey(store, 'locks/app/writer'))?.toString()).toBe('three')
      await store.delete(['locks/app/writer'], { ifMatch: second.etag })
      expect(await readKey(store, 'locks/app/writer')).toBeUndefined()
    })

    additionalTests?.(() => store)
  })
}
