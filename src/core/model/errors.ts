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
    super(redact(message), options && { cause: safeCause(options.cause) })
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

/** Fields of a client's error that say what went wrong and nothing else; `facts` and `isTransient` read these. */
const SAFE_FIELDS = ['code', 'errno', 'syscall', 'transient', '$retryable', '$fault'] as const
/** How deep a cause chain is copied: deeper is a loop or nobody's business. */
const MAX_CAUSES = 8

/**
 * A copy of a thrown value that is safe to hand on: name, code, message and stack (redacted), the
 * HTTP status, and its own causes the same way. Clients hang much more on their errors: the AWS SDK
 * the whole HTTP exchange (`$response`, whose request headers carry the session token and the key
 * id), Valkey clients the command and its arguments. A reporter that walks errors would print them.
 */
function safeCause(cause: unknown, depth = 0): unknown {
  if (cause === undefined || cause instanceof PushCacheError) return cause
  if (!(cause instanceof Error)) return redact(String(cause))
  const copy = new Error(redact(cause.message)) as Error & Record<string, unknown>
  copy.name = cause.name
  copy.stack = cause.stack && redact(cause.stack)
  const source = cause as Error & Record<string, unknown>
  for (const field of SAFE_FIELDS) if (source[field] !== undefined && typeof source[field] !== 'object') copy[field] = source[field]
  const metadata = source.$metadata as { httpStatusCode?: number; requestId?: string } | undefined
  if (metadata) copy.$metadata = { httpStatusCode: metadata.httpStatusCode, requestId: metadata.requestId }
  if (Array.isArray(source.errors)) copy.errors = source.errors.map((inner) => safeCause(inner, depth + 1))
  if (source.cause !== undefined && depth < MAX_CAUSES) copy.cause = safeCause(source.cause, depth + 1)
  return copy
}

export function invalidOption(option: string, problem: string, fix: string): PushCacheError {
  return new PushCacheError('INVALID_OPTION', `Option \`${option}\` ${problem}. ${fix}`)
}

/**
 * Hides the userinfo of anything that looks like `scheme://user:password@host`, mistyped forms
 * included (`redis//:pw@h`, `redis:/:pw@h`, `valkey:pw@h`): the user stays; the password may hold
 * `@`, `/` or `:` unencoded, so it runs to the last `@` of the word. Also hides known secret query
 * parameters and `Authorization` values that a server echoed back.
 */
export function redact(text: string): string {
  return text
    .replace(/\b([a-z][a-z0-9+.-]*(?::\/{0,2}|\/\/))([^\s"'`]*)@(?=[\w[])/gi, (_, scheme: string, userinfo: string) => {
      const separator = userinfo.indexOf(':')
      return `${scheme}${separator < 0 ? '' : `${userinfo.slice(0, separator)}:`}***@`
    })
    .replace(/(X-Amz-Credential|X-Amz-Signature|X-Amz-Security-Token|password|secret)=([^&\s]+)/gi, '$1=***')
    .replace(/(authorization["']?\s*[:=]\s*["']?)(?:(basic|bearer)\s+)?[^\s"',}]+/gi, (_, name: string, kind?: string) => `${name}${kind ? `${kind} ` : ''}***`)
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
