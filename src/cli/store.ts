import { describeError, invalidOption, PushCacheError } from '../core/model/errors'
import { PreconditionFailed, type Store } from '../core/store/store'
import type { Logger } from '../core/util/logger'
import type { ResolvedOptions } from '../options'
import { createStore } from '../stores'
import { diagnose } from '../stores/diagnose'

/**
 * The store failed every request a command made, answering none: it is wrong (no server, no or
 * refused credentials, no bucket), bad configuration, exit 2. It keeps the store's own code
 * (`STORE_UNREACHABLE` is the same code in every command, `watch` included), so scripts match one
 * code for one failure.
 */
export class StoreConfigurationError extends PushCacheError {}

/** The store's own error along the `cause` chain: it already names the store and the fix. */
function storeError(error: unknown, depth = 0): PushCacheError | undefined {
  if (!(error instanceof Error) || depth > 8) return undefined
  if (error instanceof PushCacheError && (error.code === 'STORE_UNREACHABLE' || error.code === 'STORE_TIMEOUT')) return error
  return storeError(error.cause, depth + 1)
}

/**
 * A failure of a command whose requests the store never answered, as bad configuration: the store
 * does not answer, refuses (credentials, no bucket) or keeps failing (a 5xx on every attempt). Its
 * message names the store and the fix, whatever the client said.
 */
function asConfigurationError(error: unknown, store: Store, request: string): StoreConfigurationError {
  const diagnosis = diagnose(error, store.kind, '--store / PUSH_CACHE_STORE')
  const own = storeError(error)
  // A missing bucket is no unreachable store: it was reached and said no.
  if (own) return new StoreConfigurationError(diagnosis && !diagnosis.unreachable ? 'INVALID_OPTION' : own.code, own.message, { cause: error })
  if (!diagnosis)
    return new StoreConfigurationError(
      'STORE_UNREACHABLE',
      `${store.display} failed the first request (${request}), every attempt: ${describeError(error)}. Check that the store is up and healthy; PUSH_CACHE_DEBUG=1 shows each attempt.`,
      { cause: error },
    )
  const { message } = invalidOption('--store', `${store.display} ${diagnosis.problem} (${describeError(error)})`, diagnosis.fix)
  return new StoreConfigurationError(diagnosis.unreachable ? 'STORE_UNREACHABLE' : 'INVALID_OPTION', message, { cause: error })
}

/** Whether a store call's outcome is the store's answer: a result, or a refused condition (a lock held by another writer). */
interface Answers {
  answered: boolean
  /** The first call that failed, as `put locks/app/writer`: what the message of a store that never answered names. */
  failed?: string
}

const settle = <T>(outcome: Promise<T>, answers: Answers, call: string): Promise<T> =>
  outcome.then(
    (value) => {
      answers.answered = true
      return value
    },
    (error) => {
      if (error instanceof PreconditionFailed) answers.answered = true
      else answers.failed ??= call
      throw error
    },
  )

/** `store`, noting whether any of its calls got an answer: a listing's first page (or its end) is one. */
function noteAnswers(store: Store, answers: Answers): Store {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver)
      if (typeof value !== 'function' || name === 'isTransient' || name === 'close') return value
      return (...args: unknown[]) => {
        // Once the store answered, a failure is no misconfiguration: nothing more to note.
        if (answers.answered) return value.apply(target, args)
        const result = value.apply(target, args)
        const call = `${String(name)} ${typeof args[0] === 'string' ? args[0] : `${(args[0] as unknown[]).length} keys`}`
        if (result instanceof Promise) return settle(result, answers, call)
        if (result && typeof result === 'object' && Symbol.asyncIterator in result) {
          const iterator = (result as AsyncIterable<unknown>)[Symbol.asyncIterator]()
          return { [Symbol.asyncIterator]: () => ({ next: () => settle(iterator.next(), answers, call), return: iterator.return?.bind(iterator) }) }
        }
        return result
      }
    },
  })
}

/** Warnings held before the store first answers, at most: retries of the first requests, a few each. */
const HELD_WARNINGS = 100

/**
 * `logger`, holding its warnings until the store first answers: a wrong URL reads as one error
 * line, its retries shown only with `PUSH_CACHE_DEBUG=1`. `release` sends on what it held.
 */
function holdingWarnings(logger: Logger, answers: Answers): Logger & { release(asWarnings: boolean): void } {
  const held: string[] = []
  const release = (asWarnings: boolean) => {
    for (const message of held.splice(0)) (asWarnings ? logger.warn : logger.debug)(message)
  }
  return {
    ...logger,
    warn(message) {
      if (!answers.answered && held.length < HELD_WARNINGS) return void held.push(message)
      release(true)
      logger.warn(message)
    },
    release,
  }
}

/**
 * Opens the store and runs `work` with it. No request checks the store first: that would cost a
 * round trip. A command whose every store request failed, none answered (the first one a lock, a
 * listing: nothing was written), fails as bad configuration instead, naming the store and the fix.
 */
export async function withOpenStore<T>(options: ResolvedOptions, logger: Logger, work: (store: Store, logger: Logger) => Promise<T>): Promise<T> {
  const store = await createStore(options.store, options)
  const answers: Answers = { answered: false }
  const held = holdingWarnings(logger, answers)
  try {
    const result = await work(noteAnswers(store, answers), held)
    held.release(true)
    return result
  } catch (error) {
    const misconfigured = answers.failed !== undefined && !answers.answered
    held.release(!misconfigured)
    throw misconfigured ? asConfigurationError(error, store, answers.failed!) : error
  } finally {
    await store.close()
  }
}
