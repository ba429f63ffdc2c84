import { describe, expect, it } from 'vitest'
import { leavePayloadUnsigned } from '../../src/stores/s3-connection'

/** The `x-amz-content-sha256` a request is signed with, after the store's middleware saw it (undefined: the signer hashes the body). */
function payloadHash(protocol: string, headers: Record<string, string>): string | undefined {
  const request = { protocol, body: Buffer.from('bytes'), headers: { ...headers } }
  leavePayloadUnsigned(request)
  return request.headers['x-amz-content-sha256']
}

describe('which S3 bodies go out unsigned', () => {
  it('a body that carries its Content-MD5, over HTTP or HTTPS: the signed MD5 guards it', () => {
    expect(payloadHash('http:', { 'Content-MD5': 'x' })).toBe('UNSIGNED-PAYLOAD')
    expect(payloadHash('https:', { 'content-md5': 'x' })).toBe('UNSIGNED-PAYLOAD')
  })

  it('a part that carries a CRC32 only over HTTPS: over plain HTTP anyone could match its CRC32, so the signer hashes it', () => {
    expect(payloadHash('https:', { 'x-amz-checksum-crc32': 'x' })).toBe('UNSIGNED-PAYLOAD')
    expect(payloadHash('http:', { 'x-amz-checksum-crc32': 'x' })).toBeUndefined()
  })
})
