import { isTransient } from '../core/util/concurrency'

/** S3 error codes with which a server says "not now" rather than "no". */
const TRANSIENT_CODES = new Set(['RequestTimeout', 'SlowDown', 'InternalError', 'ServiceUnavailable', 'ThrottlingException'])

/**
 * Worth another attempt on S3: what is for every store (`transient`, network trouble), a 5xx or
 * 429 answer, an error the AWS SDK marks retryable, or a code that says "not now".
 */
export function isTransientS3(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false
  const e = error as { transient?: boolean; code?: string; name?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown }
  if (typeof e.transient === 'boolean') return e.transient
  const status = e.$metadata?.httpStatusCode
  if (status !== undefined) return status >= 500 || status === 429
  return Boolean(e.$retryable) || TRANSIENT_CODES.has(e.code ?? '') || TRANSIENT_CODES.has(e.name ?? '') || isTransient(error)
}
