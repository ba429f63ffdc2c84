import { setTimeout as sleep } from 'node:timers/promises'
import { createBackoff } from './backoff'

/** Node's and undici's names for network trouble, which every store over a socket meets. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'TimeoutError',
])

/**
 * Worth another attempt, as far as any store can tell: an error that says so (`transient`), or
 * network trouble. A store knows more of its own errors (S3's 5xx and `SlowDown`): core asks
 * `Store.isTransient`, which starts from this.
 */
export function isTransient(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false
  const e = error as { transient?: boolean; code?: string; name?: string }
  if (typeof e.transient === 'boolean') return e.transient
  return NETWORK_CODES.has(e.code ?? '') || NETWORK_CODES.has(e.name ?? '')
}

export interface RetryOptions {
  retries: number
  /** Whether a failure is worth another attempt: the store's answer (`store.isTransient`) for its requests. */
  isTransient: (error: unknown) => boolean
  /** First delay; doubles each attempt, with full jitter. */
  baseDelayMs?: number
  onRetry?: (error: unknown, attempt: number) => void
}

export async function withRetry<T>(attempt: () => Promise<T>, { retries, isTransient: worthRetrying, baseDelayMs = 200, onRetry }: RetryOptions): Promise<T> {
  const backoff = createBackoff({ minMs: baseDelayMs, maxMs: Number.POSITIVE_INFINITY }, { floorMs: 0 })
  for (let failures = 0; ; failures++) {
    try {
      return await attempt()
    } catch (error) {
      if (failures >= retries || !worthRetrying(error)) throw error
      onRetry?.(error, failures + 1)
      await sleep(backoff.next())
    }
  }
}

/** Bounds what tasks hold at once, in some unit (bytes in memory): a share is awaited before a task starts. */
export interface Budget<T> {
  limit: number
  /** A share larger than `limit` runs once nothing else holds any. */
  cost(item: T): number
}

/**
 * Runs `task` over `items` in order, with at most `limit` in flight and, with a `budget`, at most
 * `budget.limit` units held by those in flight. After the first failure no new task starts; the
 * ones in flight settle, then the first error is thrown (so nothing runs on after the caller has
 * given up).
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, task: (item: T) => Promise<unknown>, budget?: Budget<T>): Promise<void> {
  let next = 0
  let failure: { error: unknown } | undefined
  let held = 0
  let waiting: (() => void)[] = []
  const freed = () => new Promise<void>((resolve) => waiting.push(resolve))
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!
      const cost = budget ? Math.min(budget.cost(item), budget.limit) : 0
      while (budget && held > 0 && held + cost > budget.limit) await freed()
      held += cost
      try {
        await task(item)
      } catch (error) {
        failure ??= { error }
      } finally {
        held -= cost
        for (const wake of waiting) wake()
        waiting = []
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (failure) throw failure.error
}

/**
 * `promise`, or its rejection with `signal.reason` as soon as `signal` aborts (the work itself runs
 * on). What it resolves to after that goes to `dispose`: a late stream is closed, not leaked.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal, dispose?: (late: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason)
      promise.then(dispose, () => {})
    }
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
