import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createS3Store } from '../../src/stores/s3'
import { createBucket, requestLog, s3StoreOptions, s3StoreUrl } from '../helpers/s3'

const MIB = 1024 * 1024
/** Three parts each: 8 + 8 + 1 MiB. */
const SIZE = 17 * MIB
const FILES = 5

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'push-cache-s3-multipart-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

it('sends the parts of large files put at once file after file, not round the files', async () => {
  const bucket = await createBucket()
  const store = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
  const bytes = randomBytes(SIZE)
  const keys = Array.from({ length: FILES }, (_, n) => `large-${n}.bin`)
  try {
    for (const key of keys) await writeFile(join(root, key), bytes)
    // As core sends them: every large file at once, the store's part buffers bounding the bytes held.
    await Promise.all(keys.map((key) => store.put(key, { file: join(root, key), size: SIZE })))
  } finally {
    await store.close()
  }
  const parts = (await requestLog(bucket)).filter((request) => request.query.includes('partNumber='))
  const starts = (key: string) => parts.filter((request) => request.key === key).map((request) => request.start)
  // Round the uploads, the third file's first part went before the first file's last one.
  for (let n = 0; n + 2 < FILES; n++) expect(Math.max(...starts(keys[n]!))).toBeLessThan(Math.min(...starts(keys[n + 2]!)))
})
