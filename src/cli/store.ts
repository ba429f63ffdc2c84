import { describeError, invalidOption, PushCacheError } from '../core/model/errors'
import { layoutOf } from '../core/store/layout'
import type { Store } from '../core/store/store'
import { withRetry } from '../core/util/concurrency'
import type { Logger } from '../core/util/logger'
import type { ResolvedOptions } from '../options'
import { createStore } from '../stores'
import { diagnose } from '../stores/diagnose'

/**
 * The first request failed because the store is wrong (no server, no or refused credentials, no
 * bucket): bad configuration, exit 2. It keeps the store's own code (`STORE_UNREACHABLE` is the
 * same code in every command, `watch` included), so scripts match one code for one failure.
 */
export class StoreConfigurationError extends PushCacheError {}

/**
 * The failure of the first request, which wrote nothing, as bad configuration: the store does not
 * answer, refuses (credentials, no bucket) or keeps failing (a 5xx on every attempt). Its message
 * names the store and the request, whatever the client said.
 */
function asConfigurationError(error: unknown, store: Store, prefix: string): unknown {
  const diagnosis = diagnose(error, store.kind, '--store / PUSH_CACHE_STORE')
  // The stores' own errors already name the store and the fix: only their exit code changes, and
  // their code when the store was reached and said no (a missing bucket is no unreachable store).
  if (error instanceof PushCacheError && (error.code === 'STORE_UNREACHABLE' || error.code === 'STORE_TIMEOUT'))
    return new StoreConfigurationError(diagnosis && !diagnosis.unreachable ? 'INVALID_OPTION' : error.code, error.message, { cause: error })
  if (error instanceof PushCacheError) return error
  if (!diagnosis)
    return new StoreConfigurationError(
      'STORE_UNREACHABLE',
      `${store.display} failed the first request (listing ${prefix}), every attempt: ${describeError(error)}. Nothing was written. Check that the store is up and healthy; PUSH_CACHE_DEBUG=1 shows each attempt.`,
      { cause: error },
    )
  const { message } = invalidOption('--store', `${store.display} ${diagnosis.problem} (${describeError(error)})`, diagnosis.fix)
  return new StoreConfigurationError(diagnosis.unreachable ? 'STORE_UNREACHABLE' : 'INVALID_OPTION', message, { cause: error })
}

/**
 * Opens the store and reads the app's manifest list once before anything is written, so a wrong
 * URL, a dead server or refused credentials fail fast as bad configuration with nothing written.
 */
export async function openStore(options: ResolvedOptions, logger: Logger): Promise<Store> {
  const store = await createStore(options.store, options)
  const prefix = layoutOf(store).manifestPrefix(options.app)
  try {
    // Retried like any request, so a blip is not taken for a wrong URL, and a store that stalls
    // is reported (and given up) within the same bound as every later request.
    await withRetry(
      async () => {
        for await (const _ of store.list(prefix)) break
      },
      {
        retries: options.retries,
        isTransient: store.isTransient,
        // Quiet unless asked: a wrong URL still reads as one error line.
        onRetry: (error, count) => logger.debug(`retrying the first request to ${store.display} (${count}/${options.retries}): ${describeError(error)}`),
      },
    )
  } catch (error) {
    await store.close().catch(() => {})
    throw asConfigurationError(error, store, prefix)
  }
  return store
}
