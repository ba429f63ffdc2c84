import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, expect, inject, it } from 'vitest'
import { createLocalStore } from '../../src/stores/local'
import { createS3Store } from '../../src/stores/s3'
import { clearFaults, createBucket, getObject, injectFault, listObjects, requestLog, s3StoreOptions, s3StoreUrl } from '../helpers/s3'
import { testStoreContract } from '../helpers/store-contract'

const directories: string[] = []
afterAll(async () => {
  await Promise.all(directories.map((directory) => rm(directory, { recursive: true, force: true })))
})

testStoreContract('local', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'push-cache-local-'))
  directories.push(directory)
  return createLocalStore(directory)
})

let bucket: string
testStoreContract(
  's3',
  async () => {
    bucket = await createBucket()
    return createS3Store(s3StoreUrl(bucket), s3StoreOptions())
  },
  {
    // s3rver cannot paginate on Node ≥17: its continuation token needs a cipher OpenSSL 3 dropped.
    manyKeys: inject('s3').server !== 's3rver',
    additionalTests(store) {
      afterEach(clearFaults)

      it('keeps Content-Type, Cache-Control and metadata', async () => {
        await store().put('data/app/a.css', Buffer.from('a{}'), {
          contentType: 'text/css; charset=utf-8',
          cacheControl: 'public, max-age=60',
          metadata: { md5chksum: 'abc' },
        })
        expect(await getObject(bucket, 'data/app/a.css')).toMatchObject({
          contentType: 'text/css; charset=utf-8',
          cacheControl: 'public, max-age=60',
          metadata: { md5chksum: 'abc' },
        })
      })

      it('puts every key under the root prefix and lists keys without it', async () => {
        const rooted = createS3Store(s3StoreUrl(bucket, '/team//site/'), s3StoreOptions())
        try {
          await rooted.put('data/app/x.js', Buffer.from('x'))
          expect(await listObjects(bucket)).toEqual([{ key: 'team/site/data/app/x.js', size: 1 }])
          const entries = []
          for await (const entry of rooted.list('data/')) entries.push(entry)
          expect(entries).toEqual([{ key: 'data/app/x.js', size: 1, lastModified: expect.any(Date), etag: expect.not.stringContaining('"') }])
          expect(rooted.display).toMatch(new RegExp(`^s3://${bucket}/team/site at http://127\\.0\\.0\\.1:\\d+$`))
          await rooted.delete(['data/app/x.js'])
          expect(await listObjects(bucket)).toEqual([])
        } finally {
          await rooted.close()
        }
      })

      it('redacts credentials of the endpoint in its display', () => {
        const display = createS3Store('s3://b/r', { endpoint: 'http://user:secret@127.0.0.1:1' }).display
        expect(display).toBe('s3://b/r at http://user:***@127.0.0.1:1')
      })

      it('says how to fix a missing bucket, and never reads it as a missing key', async () => {
        const missing = createS3Store(s3StoreUrl(`${bucket}-missing`), s3StoreOptions())
        try {
          const error = { code: 'STORE_UNREACHABLE', message: expect.stringMatching(/does not exist.*Create it.*`store`/) }
          await expect(missing.put('data/app/x.js', Buffer.from('x'))).rejects.toMatchObject(error)
          await expect(missing.read('manifests/app/1')).rejects.toMatchObject(error)
        } finally {
          await missing.close()
        }
      })

      it('leaves retries to core: a 503 fails after one request with an error core retries', async () => {
        await injectFault({ bucket, method: 'PUT', key: 'data/app/x.js', times: 1 })
        const error = await store()
          .put('data/app/x.js', Buffer.from('x'))
          .catch((thrown: unknown) => thrown)
        expect(store().isTransient(error)).toBe(true)
        expect((await requestLog(bucket)).filter((request) => request.key === 'data/app/x.js')).toHaveLength(1)
      })

      const largeFile = async () => {
        const directory = await mkdtemp(join(tmpdir(), 'push-cache-s3-'))
        directories.push(directory)
        const file = join(directory, 'large.bin')
        await writeFile(file, randomBytes(17 * 1024 * 1024))
        return { file, size: 17 * 1024 * 1024 }
      }

      it('uploads a large file in parts, and tells the MD5 of the whole file it read', async () => {
        const large = await largeFile()
        const { md5 } = await store().put('data/app/large.bin', large)
        expect(md5).toBe(
          createHash('md5')
            .update(await readFile(large.file))
            .digest('hex'),
        )
        const parts = (await requestLog(bucket)).filter((request) => request.method === 'PUT' && request.query.includes('partNumber='))
        expect(parts).toHaveLength(3)
      })

      it('sends a failed part again on its own, within the one multipart upload', async () => {
        await injectFault({ bucket, method: 'PUT', key: 'data/app/large.bin', times: 1 })
        await store().put('data/app/large.bin', await largeFile())
        const requests = (await requestLog(bucket)).filter((request) => request.key === 'data/app/large.bin')
        expect(requests.filter((request) => request.method === 'POST' && request.query.includes('uploads'))).toHaveLength(1)
        expect(requests.filter((request) => request.method === 'PUT')).toHaveLength(4) // three parts, the failed one twice
        expect((await listObjects(bucket)).map((object) => object.key)).toEqual(['data/app/large.bin'])
      })

      it('fails a multipart upload whose part keeps failing for good, so that core does not send the file again, and aborts it', async () => {
        await injectFault({ bucket, method: 'PUT', key: 'data/app/large.bin' })
        const error = await store()
          .put('data/app/large.bin', await largeFile())
          .catch((thrown: unknown) => thrown)
        expect(store().isTransient(error)).toBe(false)
        expect(await listObjects(bucket)).toEqual([])
        const aborts = (await requestLog(bucket)).filter((request) => request.method === 'DELETE' && request.query.includes('uploadId='))
        expect(aborts).toHaveLength(1) // no orphaned parts
      })

      it('deletes key by key when the server rejects DeleteObjects', async () => {
        await store().put('data/app/a.js', Buffer.from('a'))
        await store().put('data/app/b.js', Buffer.from('b'))
        await injectFault({ bucket, method: 'POST', key: '', status: 400 })
        await store().delete(['data/app/a.js', 'data/app/b.js'])
        expect(await listObjects(bucket)).toEqual([])
        expect(
          (await requestLog(bucket))
            .filter((request) => request.method === 'DELETE')
            .map((request) => request.key)
            .sort(),
        ).toEqual(['data/app/a.js', 'data/app/b.js'])
      })
    },
  },
)
