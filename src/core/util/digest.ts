import { createHash } from 'node:crypto'
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

/** MD5 of bytes: hex for manifests and ETags, base64 for a `Content-MD5` header. */
export const md5 = (bytes: Uint8Array, encoding: 'hex' | 'base64' = 'hex'): string => createHash('md5').update(bytes).digest(encoding)

/** A plain (single-part, non-KMS) S3 ETag is the MD5 of the bytes; a multipart one ends in `-<parts>`. */
export const isMd5 = (etag: string | undefined): etag is string => etag !== undefined && /^[0-9a-f]{32}$/i.test(etag)
