/** The fix for refused credentials, per store: secrets come from the environment, never from flags or config files. */
export const CREDENTIALS_FIX: Record<string, string> = {
  s3: 'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / a workload identity) to a key that may list, read and write the bucket.',
  valkey:
    'Set PUSH_CACHE_VALKEY_USERNAME and PUSH_CACHE_VALKEY_PASSWORD (or the user and password in the store URL) to an account that may read and write the keys.',
}

/** How a failed request reads when the store itself is misconfigured, checked in this order. */
const MISCONFIGURED: { pattern: RegExp; problem: string; fix: (kind: string, storeOption: string) => string; unreachable?: true }[] = [
  { pattern: /CredentialsProviderError|Could not load credentials/, problem: 'found no credentials', fix: () => CREDENTIALS_FIX.s3! },
  // S3 refuses a skewed clock with a 403, which would otherwise read as refused credentials.
  {
    pattern: /RequestTimeTooSkewed/,
    problem: "says this machine's clock is off",
    fix: () =>
      'Set the clock right (NTP): S3 refuses requests signed more than 15 minutes from its own time. A push corrects a skew by itself when it may retry (`retries` above 0).',
  },
  {
    pattern: /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|InvalidToken|ExpiredToken|InvalidClientTokenId|NOAUTH|WRONGPASS|NOPERM|HTTP 40[13]\b/,
    problem: 'rejected the credentials',
    fix: (kind) => CREDENTIALS_FIX[kind] ?? 'Check the credentials in the environment.',
  },
  {
    pattern: /NoSuchBucket/,
    problem: 'names a bucket that does not exist',
    fix: (_, storeOption) => `Create the bucket, or fix its name in ${storeOption}.`,
  },
  {
    pattern: /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET|TimeoutError/,
    problem: 'cannot be reached',
    fix: (_, storeOption) => `Check the host and port in ${storeOption} (and AWS_ENDPOINT_URL_S3 for S3), and that the server is running.`,
    unreachable: true,
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
 * What a failure says about the store's configuration (no server, no or refused credentials, no
 * bucket), with the fix and whether the store was not reached at all; undefined when it says nothing of the kind. `storeOption` is where the user
 * set the store (`--store / PUSH_CACHE_STORE`, or the plugin's `store` option).
 */
export function diagnose(error: unknown, kind: string, storeOption: string): { problem: string; fix: string; unreachable: boolean } | undefined {
  const text = facts(error)
  const rule = MISCONFIGURED.find(({ pattern }) => pattern.test(text))
  return rule && { problem: rule.problem, fix: rule.fix(kind, storeOption), unreachable: rule.unreachable === true }
}
