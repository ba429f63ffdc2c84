import { describeError } from '../model/errors'
import type { ResolvedCoreOptions } from '../model/options'
import type { Retry } from '../store/build-write'
import type { Store } from '../store/store'
import { type AdaptiveLimit, createAdaptiveLimit, levelForRoundTrip, withRetry } from '../util/concurrency'
import type { Logger } from '../util/logger'
import type { PopulateReport } from './report'

/** What every phase of one push shares. */
export interface PushRun {
  store: Store
  options: ResolvedCoreOptions
  logger: Logger
  now: () => number
  /** Retries a request as the store judges its failures, with a warning per retry. */
  retry: Retry
  /**
   * Uploads in flight: `--concurrency` when given, else found by probing the link from the store's
   * default, widened by the round trip the store has seen when the first upload starts.
   */
  inFlight: AdaptiveLimit | number
  /** Runs a phase and records its milliseconds in `report.phases`, even when it fails. */
  timed<T>(phase: keyof PopulateReport['phases'], work: () => Promise<T>): Promise<T>
}

const DEFAULT_CONCURRENCY = 16

export function createPushRun(store: Store, options: ResolvedCoreOptions, logger: Logger, now: () => number, report: PopulateReport): PushRun {
  const level = store.concurrency ?? DEFAULT_CONCURRENCY
  const max = Math.max(level, store.maxConcurrency ?? level)
  const inFlight = options.concurrency ?? createAdaptiveLimit({ initial: () => levelForRoundTrip(level, max, store.roundTripMs?.()), max })
  return {
    store,
    options,
    logger,
    now,
    inFlight,
    retry: (what, attempt) =>
      withRetry(attempt, {
        retries: options.retries,
        isTransient: store.isTransient,
        onRetry: (error, count) => {
          // A request that had to be retried is the link or the server saying "less".
          if (typeof inFlight !== 'number') inFlight.congested()
          logger.warn(`retrying ${what} (${count}/${options.retries}): ${describeError(error)}`)
        },
      }),
    async timed(phase, work) {
      const start = now()
      try {
        return await work()
      } finally {
        report.phases[phase] = now() - start
      }
    },
  }
}
