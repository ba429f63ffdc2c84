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

/** How many tasks may run at once, read before each one starts: it may change while they run. */
export interface InFlightLimit {
  /** Never more than this. */
  readonly max: number
  current(): number
}

/** The round trip that a store's default in flight fills: at 20 ms, 256 in flight gained nothing over 32. */
const FILLED_ROUND_TRIP_MS = 25

/**
 * Where a limit starts on a link whose round trip is `roundTripMs`: `level` (the store's default)
 * scaled by the round trips it spans, as a bandwidth-delay product grows with the delay, never
 * below `level` (unknown or short links) and never above `max`. On a 100 ms link 32 become 128:
 * a hundred small files leave in one round trip, not the four of the probe's doublings from 32.
 * The round trip holds the server's time too: a server slow to answer one request also gets more
 * at once (S3 answers them side by side; a single-threaded moto on a loaded machine gains nothing).
 */
export function levelForRoundTrip(level: number, max: number, roundTripMs: number | undefined): number {
  if (roundTripMs === undefined) return Math.min(level, max)
  return Math.min(max, Math.max(level, Math.round((level * roundTripMs) / FILLED_ROUND_TRIP_MS)))
}

/**
 * A limit that finds how much a link takes, as TCP's slow start and BBR's startup do: it starts at
 * `initial` and doubles after each round (as many completions as were in flight), up to `max`, as
 * long as each doubling raised the completions per second by a sixth or more; the first that did
 * not is taken back, and the probing ends. A sign of congestion (a retried request: SlowDown, 503,
 * a timeout) halves it, down to `min`, and ends the probing too. On a short link more in flight
 * gains nothing and it stays put; on a long one it grows until the bandwidth-delay product is filled.
 *
 * It counts requests, not bytes: work goes largest first, so a round weighed in bytes always looked
 * slower than the one before it, and a long link gave its doubling back. The first round is no
 * baseline either: it carries the largest files and opens the connections, so any round after it
 * looked faster, and a short link doubled past what the server takes (at 20 ms, up to 256 in
 * flight: more sockets, and server threads fighting for its one core, for nothing). A round's
 * clock starts when its first task asks to start (not while the push still plans); `initial`, a
 * function, is read then too, when the store has answered requests that tell how long its link is.
 */
export function createAdaptiveLimit({
  initial,
  max,
  min = 4,
  now = Date.now,
}: {
  initial: number | (() => number)
  max: number
  min?: number
  now?: () => number
}) {
  let current: number | undefined
  let probing = false
  let round: { started?: number; completions: number } = { completions: 0 }
  let warmedUp = false
  /** The level before the last doubling, and its throughput. */
  let before: { level: number; throughput: number } | undefined
  const level = (): number => {
    if (current === undefined) {
      current = Math.min(typeof initial === 'number' ? initial : initial(), max)
      probing = current < max
    }
    return current
  }
  return {
    max,
    current(): number {
      round.started ??= now()
      return level()
    },
    /** A task ended well. */
    completed(): void {
      const at = level()
      if (!probing || ++round.completions < at) return
      const throughput = round.completions / Math.max(1, now() - (round.started ?? 0))
      if (!warmedUp) warmedUp = true
      else if (before && throughput < before.throughput * (7 / 6)) {
        current = before.level
        probing = false
      } else if (at < max) {
        before = { level: at, throughput }
        current = Math.min(max, at * 2)
      } else probing = false
      round = { completions: 0 }
    },
    congested(): void {
      current = Math.max(min, Math.floor(level() / 2))
      probing = false
    },
  }
}

export type AdaptiveLimit = ReturnType<typeof createAdaptiveLimit>

/** Bounds what tasks hold at once, in some unit (bytes in memory): a share is awaited before a task starts. */
export interface Budget<T> {
  limit: number
  /** A share larger than `limit` runs once nothing else holds any. */
  cost(item: T): number
}

/**
 * Runs `task` over `items` in order, with at most `limit` in flight and, with a `budget`, at most
 * `budget.limit` units held by those in flight. `later`, when given, resolves to more items, run
 * after `items`: a worker that runs out of them waits for it, so that work known early need not
 * wait for the rest to be known (its rejection is a failure like a task's). After the first
 * failure no new task starts; the ones in flight settle, then the first error is thrown (so
 * nothing runs on after the caller has given up).
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number | InFlightLimit,
  task: (item: T) => Promise<unknown>,
  budget?: Budget<T>,
  later?: Promise<readonly T[]>,
): Promise<void> {
  const inFlight = typeof limit === 'number' ? { max: limit, current: () => limit } : limit
  const growing = later ? [...items] : undefined
  const queue: readonly T[] = growing ?? items
  let next = 0
  let failure: { error: unknown } | undefined
  let held = 0
  let active = 0
  /** Workers over the limit, and workers whose item does not fit the budget, each woken by a task that ends. */
  const parked: (() => void)[] = []
  const starved: (() => void)[] = []
  /** Workers that ran out of items while `later` is pending, woken when it settles or a task fails. */
  const waiting: (() => void)[] = []
  const freed = (queue: (() => void)[]) => new Promise<void>((resolve) => queue.push(resolve))
  let pending = later !== undefined
  later
    ?.then(
      (more) => {
        for (const item of more) growing!.push(item)
      },
      (error) => {
        failure ??= { error }
      },
    )
    .finally(() => {
      pending = false
      for (const wake of waiting.splice(0)) wake()
    })
  const worker = async () => {
    for (;;) {
      if (!failure && next >= queue.length && pending) {
        await freed(waiting)
        continue
      }
      if (failure || next >= queue.length) return
      // A limit that shrank (or has not grown this far yet) parks the workers above it.
      if (active > 0 && active >= inFlight.current()) {
        await freed(parked)
        continue
      }
      const item = queue[next++]!
      const cost = budget ? Math.min(budget.cost(item), budget.limit) : 0
      while (budget && held > 0 && held + cost > budget.limit) await freed(starved)
      held += cost
      active++
      try {
        await task(item)
      } catch (error) {
        failure ??= { error }
        for (const wake of waiting.splice(0)) wake()
      } finally {
        held -= cost
        active--
        // As many parked workers as there are free slots: an adaptive limit parks up to its maximum
        // (hundreds), and waking them all at every end is a promise each for nothing. All of them
        // once there is nothing left to start, so that they return (or wait for `later`).
        const done = failure !== undefined || next >= queue.length
        for (const wake of parked.splice(0, done ? parked.length : Math.max(0, inFlight.current() - active))) wake()
        for (const wake of starved.splice(0)) wake()
      }
    }
  }
  await Promise.all(Array.from({ length: later ? inFlight.max : Math.min(inFlight.max, items.length) }, worker))
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
