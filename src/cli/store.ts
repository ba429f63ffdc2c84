import { withRetry } from '../core/concurrency'
import { describeError, invalidOption, PushCacheError } from '../core/errors'
import { layoutOf } from '../core/layout'
import type { Logger } from '../core/logger'
import type { ResolvedOptions } from '../core/options'
import type { Store } from '../core/store'
import { createStore } from '../stores'

/** The fix for refused credentials, per store: secrets come from the environment, never from flags. */
const CREDENTIALS_FIX: Record<string, string> = {
  s3: 'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / a workload identity) to a key that may list, read and write the bucket.',
  valkey:
    'Set PUSH_CACHE_VALKEY_USERNAME and PUSH_CACHE_VALKEY_PASSWORD (or the user and password in PUSH_CACHE_STORE) to an account that may read and write the keys.',
}

/** How a failed first request reads when the store itself is misconfigured, checked in this order. */
const MISCONFIGURED: { pattern: RegExp; problem: string; fix: (kind: string) => string }[] = [
  { pattern: /CredentialsProviderError|Could not load credentials/, problem: 'found no credentials', fix: () => CREDENTIALS_FIX.s3! },
  {
    pattern: /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|InvalidToken|ExpiredToken|InvalidClientTokenId|NOAUTH|WRONGPASS|NOPERM|HTTP 40[13]\b/,
    problem: 'rejected the credentials',
    fix: (kind) => CREDENTIALS_FIX[kind] ?? 'Check the credentials in the environment.',
  },
  { pattern: /NoSuchBucket/, problem: 'names a bucket that does not exist', fix: () => 'Create the bucket, or fix its name in --store / PUSH_CACHE_STORE.' },
  {
    pattern: /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET|TimeoutError/,
    problem: 'cannot be reached',
    fix: () => 'Check the host and port in --store / PUSH_CACHE_STORE (and AWS_ENDPOINT_URL_S3 for S3), and that the server is running.',
  },
]

/** Every code, name, message and HTTP status along the `cause` chain (and inside an AggregateError), as one string. */
function facts(error: unknown, seen = new Set<unknown>()): string {
  if (!error || typeof error !== 'object' || seen.has(error)) return ''
  seen.add(error)
  const e = error as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown; errors?: unknown; $metadata?: { httpStatusCode?: number } }
  const nested = [e.cause, ...(Array.isArray(e.errors) ? e.errors : [])].map((inner) => facts(inner, seen))
  return [e.code, e.name, e.message, e.$metadata?.httpStatusCode && `HTTP ${e.$metadata.httpStatusCode}`, ...nested].filter(Boolean).join(' ')
}

/**
 * Turns the failure of the first request into a configuration error (exit 2) when it says the
 * store is wrong (no server, no or refused credentials, no bucket); anything else is left as it is.
 */
function asConfigurationError(error: unknown, store: Store): unknown {
  // The stores' own connection errors already name the store and the fix: only their exit code changes.
  if (error instanceof PushCacheError && (error.code === 'STORE_UNREACHABLE' || error.code === 'STORE_TIMEOUT'))
    return new PushCacheError('INVALID_OPTION', error.message, { cause: error })
  const text = facts(error)
  const rule = MISCONFIGURED.find(({ pattern }) => pattern.test(text))
  if (!rule) return error
  return invalidOption('--store', `${store.display} ${rule.problem} (${describeError(error)})`, rule.fix(store.kind))
}

/**
 * Opens the store and reads the app's manifest list once before anything is written, so a wrong
 * URL, a dead server or refused credentials fail fast as bad configuration with nothing written.
 */
export async function openStore(options: ResolvedOptions, logger: Logger): Promise<Store> {
  const store = await createStore(options.store, options)
  try {
    // Retried like any request, so a blip is not taken for a wrong URL, and a store that stalls
    // is reported (and given up) within the same bound as every later request.
    await withRetry(
      async () => {
        for await (const _ of store.list(layoutOf(store.layout).manifestPrefix(options.app))) break
      },
      {
        retries: options.retries,
        // Quiet unless asked: a wrong URL still reads as one error line.
        onRetry: (error, count) => logger.debug(`retrying the first request to ${store.display} (${count}/${options.retries}): ${describeError(error)}`),
      },
    )
  } catch (error) {
    await store.close().catch(() => {})
    throw asConfigurationError(error, store)
  }
  return store
}
