import { expect, it } from 'vitest'
import { checksumCrc32 } from '../../src/stores/s3-multipart'

it("a part's x-amz-checksum-crc32 is its CRC32 big-endian in base64, as S3 computes it", () => {
  // The CRC-32 check value: CRC32("123456789") = 0xCBF43926.
  expect(checksumCrc32(Buffer.from('123456789'))).toBe(Buffer.from([0xcb, 0xf4, 0x39, 0x26]).toString('base64'))
  expect(checksumCrc32(new Uint8Array(0))).toBe('AAAAAA==')
})
