import { describeError } from '../model/errors'
import type { ResolvedCoreOptions } from '../model/options'
import type { Retry } from '../store/build-write'
import type { Store } from '../store/store'
import { withRetry } from '../util/concurrency'
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
  /** Runs a phase and records its milliseconds in `report.phases`, even when it fails. */
  timed<T>(phase: keyof PopulateReport['phases'], work: () => Promise<T>): Promise<T>
}

export function createPushRun(store: Store, options: ResolvedCoreOptions, logger: Logger, now: () => number, report: PopulateReport): PushRun {
  return {
    store,
    options,
    logger,
    now,
    retry: (what, attempt) =>
      withRetry(attempt, {
        retries: options.retries,
        isTransient: store.isTransient,
        onRetry: (error, count) => logger.warn(`retrying ${what} (${count}/${options.retries}): ${describeError(error)}`),
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
