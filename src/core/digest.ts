import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'

/** Below this a file is read in one call: a stream's 64 KiB buffer per small file costs more than it saves. */
const READ_WHOLE = 1024 * 1024

/**
 * Hex MD5 of a file (streamed when large): what a single-part S3 ETag is, and what manifests record
 * per file. `wanted` is asked between chunks: a large file nobody needs the hash of any more stops
 * early, with `undefined`.
 */
export function md5File(path: string, size: number): Promise<string>
export function md5File(path: string, size: number, wanted: () => boolean): Promise<string | undefined>
export async function md5File(path: string, size: number, wanted = () => true): Promise<string | undefined> {
  if (size <= READ_WHOLE) return md5(await readFile(path))
  const hash = createHash('md5')
  for await (const chunk of createReadStream(path)) {
    if (!wanted()) return undefined
    hash.update(chunk as Buffer)
  }
  return hash.digest('hex')
}

export const md5 = (bytes: Uint8Array): string => createHash('md5').update(bytes).digest('hex')

/** A plain (single-part, non-KMS) S3 ETag is the MD5 of the bytes; a multipart one ends in `-<parts>`. */
export const isMd5 = (etag: string | undefined): etag is string => etag !== undefined && /^[0-9a-f]{32}$/i.test(etag)
