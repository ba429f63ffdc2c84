import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { md5, md5File } from '../../src/core/util/digest'
import { dropSpareBuffers, giveBack, readWhole, takeBuffer } from '../../src/core/util/file-buffers'

const dir = await mkdtemp(join(tmpdir(), 'push-cache-buffers-'))
afterAll(() => rm(dir, { recursive: true }))

describe('file buffers', () => {
  it('hash a file of any size through its chunks, the first one small', async () => {
    for (const size of [0, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 256 * 1024 + 16 * 1024, 1024 * 1024 + 3]) {
      const bytes = randomBytes(size)
      await writeFile(join(dir, 'hashed'), bytes)
      expect(await md5File(join(dir, 'hashed'))).toBe(md5(bytes))
    }
  })

  it('read a whole file of any size, byte for byte', async () => {
    for (const size of [0, 1, 16 * 1024 + 1, 1024 * 1024 + 3]) {
      const bytes = randomBytes(size)
      await writeFile(join(dir, 'file'), bytes)
      const read = await readWhole(join(dir, 'file'), size, true)
      expect(read.equals(bytes)).toBe(true)
      giveBack(read)
    }
  })

  it('read a small file without a trip through the thread pool, which costs more than the read', async () => {
    await writeFile(join(dir, 'small'), randomBytes(1000))
    let turned = false
    setImmediate(() => {
      turned = true
    })
    giveBack(await readWhole(join(dir, 'small'), 1000, true))
    expect(turned).toBe(false)
  })

  it('refuse a file whose size is no longer the one collected', async () => {
    await writeFile(join(dir, 'grown'), randomBytes(100))
    await expect(readWhole(join(dir, 'grown'), 90, true)).rejects.toThrow(/grown changed while it was pushed: it holds 100 bytes, not the 90 bytes collected/)
  })

  it('hand a buffer given back to the next file of its size class, until the push drops them', () => {
    const first = takeBuffer(20_000)
    giveBack(first)
    const second = takeBuffer(30_000)
    expect(second.buffer).toBe(first.buffer)
    expect(second.byteLength).toBe(30_000)
    giveBack(second)
    dropSpareBuffers()
    expect(takeBuffer(30_000).buffer).not.toBe(first.buffer)
  })

  it('keep no buffer above 1 MiB for later', () => {
    const large = takeBuffer(2 * 1024 * 1024)
    giveBack(large)
    expect(takeBuffer(2 * 1024 * 1024).buffer).not.toBe(large.buffer)
  })
})
