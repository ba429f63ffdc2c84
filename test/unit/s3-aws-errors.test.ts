import { S3ServiceException } from '@aws-sdk/client-s3'
import { expect, it } from 'vitest'
import { isTransientS3 } from '../../src/stores/s3-transient'

/** An error answer as the SDK throws it. */
const answered = (code: string, status: number, metadata: Record<string, unknown> = {}) =>
  new S3ServiceException({ name: code, $fault: status < 500 ? 'client' : 'server', $metadata: { httpStatusCode: status, ...metadata } })

it('S3 answers are judged by their code first: RequestTimeout, SlowDown and InternalError are transient whatever the status', () => {
  expect(isTransientS3(answered('RequestTimeout', 400))).toBe(true)
  expect(isTransientS3(answered('SlowDown', 503))).toBe(true)
  expect(isTransientS3(answered('InternalError', 200))).toBe(true) // CompleteMultipartUpload fails inside a 200
  expect(isTransientS3(answered('BadDigest', 400))).toBe(true) // bytes changed on the way
  expect(isTransientS3(answered('NotImplemented', 501))).toBe(true)
  expect(isTransientS3(answered('AccessDenied', 403))).toBe(false)
  expect(isTransientS3(answered('NoSuchKey', 404))).toBe(false)
})

it('a skewed clock is transient once the SDK corrected its offset from the answer, and not before', () => {
  expect(isTransientS3(answered('RequestTimeTooSkewed', 403, { clockSkewCorrected: true }))).toBe(true)
  expect(isTransientS3(answered('RequestTimeTooSkewed', 403))).toBe(false)
})
