/** Stable error codes: scripts and tests match on these, never on message text. */
export type PushCacheErrorCode =
  | 'INVALID_OPTION'
  | 'STORE_UNREACHABLE'
  | 'STORE_TIMEOUT'
  | 'UPLOAD_FAILED'
  | 'DOWNLOAD_FAILED'
  | 'UNSAFE_PATH'
  | 'MANIFEST_UNREADABLE'
  | 'PRUNE_FAILED'
  | 'NO_FILES'

/** Codes that mean the user asked for something wrong (CLI exit 2), not that the work failed. */
export const USAGE_ERROR_CODES: ReadonlySet<PushCacheErrorCode> = new Set(['INVALID_OPTION', 'UNSAFE_PATH', 'NO_FILES'])

export class PushCacheError extends Error {
  override name = 'PushCacheError'
  /** Set when another attempt may succeed: core retries it (see `isTransient`). */
  readonly transient?: boolean
  constructor(
    readonly code: PushCacheErrorCode,
    message: string,
    options?: { cause?: unknown; transient?: boolean },
  ) {
    super(redact(message), options)
    if (options?.transient) this.transient = true
  }
}

/** The option (and its CLI flag) that bounds each kind of wait, for messages that say what to raise. */
const TIMEOUT_OPTIONS = {
  connect: '`connectTimeout` (--connect-timeout)',
  request: '`requestTimeout` (--request-timeout)',
} as const

/**
 * A store that did not answer in time. Transient, so core tries again; the message names the store,
 * what it did not do in time and the option that bounds the wait.
 */
export function timedOut(store: string, what: string, kind: keyof typeof TIMEOUT_OPTIONS, ms: number, cause?: unknown): PushCacheError {
  return new PushCacheError(
    'STORE_TIMEOUT',
    `${store} timed out: ${what} within ${ms} ms. Check that the server is up and reachable; raise ${TIMEOUT_OPTIONS[kind]} if it is only slow`,
    { cause, transient: true },
  )
}

export function invalidOption(option: string, problem: string, fix: string): PushCacheError {
  return new PushCacheError('INVALID_OPTION', `Option \`${option}\` ${problem}. ${fix}`)
}

/** Hides the password of any `scheme://user:password@host` and known secret query parameters. */
export function redact(text: string): string {
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]*):([^/@\s]*)@/gi, (_, scheme, user) => `${scheme}${user}:***@`)
    .replace(/([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]+)@/gi, (_, scheme) => `${scheme}***@`)
    .replace(/(X-Amz-Credential|X-Amz-Signature|X-Amz-Security-Token|password|secret)=([^&\s]+)/gi, '$1=***')
}

/** A one-line reason for a thrown value, secrets redacted. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
    // Node puts the reason in `code` (ECONNREFUSED), the AWS SDK in `name` (SlowDown, NoSuchBucket).
    const names = [typeof code === 'string' ? code : '', error.name === 'Error' || error.name === 'PushCacheError' ? '' : error.name]
    const detail = [...new Set(names)]
      .filter((name) => name && !error.message.includes(name))
      .concat(status ? [`HTTP ${status}`] : [])
      .join(', ')
    return redact(`${error.message || error.name}${detail ? ` (${detail})` : ''}`)
  }
  return redact(String(error))
}
