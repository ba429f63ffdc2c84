/** Bounds of a reconnect backoff, in milliseconds (pubcache's: 10 s to 5 min). */
export interface BackoffBounds {
  minMs: number
  maxMs: number
}

export const DEFAULT_BACKOFF: BackoffBounds = { minMs: 10_000, maxMs: 300_000 }

/**
 * Exponential backoff with full jitter: the n-th wait in a row is drawn uniformly between `floorMs`
 * and min(upper bound, lower bound × 2ⁿ), so that many clients that lost the same server do not
 * come back in step. A reconnect waits at least the lower bound (`floorMs` defaults to it); a
 * request retry (`withRetry`) may come back at once (`floorMs: 0`).
 */
export function createBackoff({ minMs, maxMs }: BackoffBounds, { floorMs = minMs, random = Math.random }: { floorMs?: number; random?: () => number } = {}) {
  let failures = 0
  return {
    next(): number {
      const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(failures++, 30))
      return Math.round(floorMs + random() * Math.max(0, ceiling - floorMs))
    },
    reset(): void {
      failures = 0
    },
  }
}

/** Waits `ms`, or less when any of `signals` aborts; never rejects. */
export function pause(ms: number, ...signals: AbortSignal[]): Promise<void> {
  if (ms <= 0 || signals.some((signal) => signal.aborted)) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      for (const signal of signals) signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    for (const signal of signals) signal.addEventListener('abort', done, { once: true })
  })
}

/**
 * A signal that aborts with `stop`, or with `onExpiry()` after `ms`. `dispose()` once done, so that
 * a long-lived `stop` does not collect a listener per call.
 */
export function deadline(stop: AbortSignal, ms: number, onExpiry: () => Error): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController()
  const onStop = () => controller.abort(stop.reason)
  const timer = setTimeout(() => controller.abort(onExpiry()), ms)
  if (stop.aborted) onStop()
  else stop.addEventListener('abort', onStop, { once: true })
  return {
    signal: controller.signal,
    dispose() {
      clearTimeout(timer)
      stop.removeEventListener('abort', onStop)
    },
  }
}
