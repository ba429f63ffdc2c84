import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'
import { setImmediate as turn } from 'node:timers/promises'
import { readChunks } from './file-buffers'

/**
 * Hex MD5 of a file: what a single-part S3 ETag is, and what manifests record per file. `wanted`
 * is asked between chunks: a large file nobody needs the hash of any more stops early, with `undefined`.
 */
export function md5File(path: string): Promise<string>
export function md5File(path: string, wanted: () => boolean): Promise<string | undefined>
export async function md5File(path: string, wanted = () => true): Promise<string | undefined> {
  const hash = createHash('md5')
  return (await readChunks(path, (chunk) => hash.update(chunk), wanted)) ? hash.digest('hex') : undefined
}

/**
 * Hex MD5 of the file at `path`, read synchronously into `chunk`, the event loop let in after each
 * chunk; undefined once `wanted` says no. For files in the page cache (a build just written), where
 * a read through the thread pool costs more CPU than hashing its bytes.
 */
export async function md5FileInTurns(path: string, chunk: Buffer, wanted: () => boolean): Promise<string | undefined> {
  const file = openSync(path, 'r')
  try {
    const hash = createHash('md5')
    for (let position = 0; ; ) {
      const bytesRead = readSync(file, chunk, 0, chunk.byteLength, position)
      hash.update(chunk.subarray(0, bytesRead))
      position += bytesRead
      // A regular file reads short only at its end.
      if (bytesRead < chunk.byteLength) return hash.digest('hex')
      await turn()
      if (!wanted()) return undefined
    }
  } finally {
    closeSync(file)
  }
}

/** MD5 of bytes: hex for manifests and ETags, base64 for a `Content-MD5` header. */
export const md5 = (bytes: Uint8Array, encoding: 'hex' | 'base64' = 'hex'): string => createHash('md5').update(bytes).digest(encoding)

/** A plain (single-part, non-KMS) S3 ETag is the MD5 of the bytes; a multipart one ends in `-<parts>`. */
export const isMd5 = (etag: string | undefined): etag is string => etag !== undefined && /^[0-9a-f]{32}$/i.test(etag)
