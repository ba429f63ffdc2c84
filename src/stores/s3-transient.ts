import { isTransient } from '../core/util/concurrency'

/**
 * S3 error codes worth another attempt whatever their HTTP status: S3 answers `400 RequestTimeout`
 * when a body came too slowly, and `BadDigest` when bytes changed on the way (Content-MD5).
 */
const TRANSIENT_CODES = new Set([
  'RequestTimeout',
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'Throttling',
  'ThrottlingException',
  'BadDigest',
  // 409: another conditional write of the same key was in flight; S3 asks to try again.
  'ConditionalRequestConflict',
])

/** An error as the AWS SDK throws it: its S3 code as `name` (or `Code` inside a DeleteObjects answer). */
export type S3Error = Error & { Code?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number; clockSkewCorrected?: boolean } }

export const isTransientS3Code = (code: string | undefined): boolean => TRANSIENT_CODES.has(code ?? '')

/**
 * Whether another attempt of a failed S3 request may succeed: the store's own mark (`transient`),
 * a "not now" code whatever the status, a clock skew the SDK just corrected from the server's
 * `Date`, a 5xx or 429, an error the SDK calls retryable, or network trouble.
 */
export function isTransientS3(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false
  const e = error as S3Error & { transient?: boolean }
  if (typeof e.transient === 'boolean') return e.transient
  if (e.$metadata?.clockSkewCorrected) return true
  if (isTransientS3Code(e.name) || isTransientS3Code(e.Code)) return true
  const status = e.$metadata?.httpStatusCode
  if (status !== undefined) return status >= 500 || status === 429
  return Boolean(e.$retryable) || isTransient(error)
}
