import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'

/** Bytes read at a time; most files of a build fit in one read. */
const CHUNK = 256 * 1024
/** Chunks kept for the next file: as many as files are hashed at once, at most. */
const MAX_SPARE_CHUNKS = 16
/**
 * Read buffers handed from one file to the next: hashing a build reads it all, and a fresh buffer
 * per file is garbage the size of the build, which the process holds until V8 gets to it.
 */
const spareChunks: Buffer[] = []

/**
 * Hex MD5 of a file: what a single-part S3 ETag is, and what manifests record per file. `wanted`
 * is asked between chunks: a large file nobody needs the hash of any more stops early, with `undefined`.
 */
export function md5File(path: string): Promise<string>
export function md5File(path: string, wanted: () => boolean): Promise<string | undefined>
export async function md5File(path: string, wanted = () => true): Promise<string | undefined> {
  const hash = createHash('md5')
  const chunk = spareChunks.pop() ?? Buffer.allocUnsafeSlow(CHUNK)
  const file = await open(path)
  try {
    // A regular file reads short only at its end.
    for (let position = 0; ; ) {
      const { bytesRead } = await file.read(chunk, 0, CHUNK, position)
      hash.update(chunk.subarray(0, bytesRead))
      if (bytesRead < CHUNK) return hash.digest('hex')
      position += bytesRead
      if (!wanted()) return undefined
    }
  } finally {
    await file.close()
    if (spareChunks.length < MAX_SPARE_CHUNKS) spareChunks.push(chunk)
  }
}

export const md5 = (bytes: Uint8Array): string => createHash('md5').update(bytes).digest('hex')

/** A plain (single-part, non-KMS) S3 ETag is the MD5 of the bytes; a multipart one ends in `-<parts>`. */
export const isMd5 = (etag: string | undefined): etag is string => etag !== undefined && /^[0-9a-f]{32}$/i.test(etag)
