/** Bounds of a reconnect backoff, in milliseconds (pubcache's: 10 s to 5 min). */
export interface BackoffBounds {
  minMs: number
  maxMs: number
}

export const DEFAULT_BACKOFF: BackoffBounds = { minMs: 10_000, maxMs: 300_000 }

/**
 * Exponential backoff with full jitter: the n-th wait in a row is drawn uniformly between the lower
 * bound and min(upper bound, lower bound × 2ⁿ), so that many clients that lost the same server do
 * not come back in step.
 */
export function createBackoff({ minMs, maxMs }: BackoffBounds, random: () => number = Math.random) {
  let failures = 0
  return {
    next(): number {
      const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(failures++, 30))
      return Math.round(minMs + random() * Math.max(0, ceiling - minMs))
    },
    reset(): void {
      failures = 0
    },
  }
}

/** Waits `ms`, or less when `signal` aborts; never rejects. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
