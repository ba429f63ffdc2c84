import { describeError, PushCacheError } from '../model/errors'
import { formatBytes } from '../model/progress'
import type { Store } from '../store/store'
import { type BackoffBounds, createBackoff, DEFAULT_BACKOFF, deadline, pause } from '../util/backoff'
import { abortable } from '../util/concurrency'
import { formatAge } from '../util/duration'
import { type Logger, silentLogger } from '../util/logger'
import { type PopReport, pop, readStoreSnapshot } from './pop'
import { readServed } from './served-dir'

/**
 * Learns of new builds sooner than polling does (a vwatch long-poll, a Valkey channel). Only a
 * hint to look at the store now: the store is the truth, and polling it never stops.
 */
export interface Notifier {
  /** Where it listens, for the log. */
  readonly name: string
  /** Listens until `signal` aborts, reconnecting with backoff by itself; never rejects. */
  listen(events: NotifierEvents, signal: AbortSignal): Promise<void>
}

interface NotifierEvents {
  /** A new build may be in the store. */
  hint(): void
  /** Say it on every answer or failure: the watch logs only the changes. */
  status(state: 'connected' | 'lost', reason?: string): void
  /** The build timestamp `dest` holds, for notifiers that tell the server what they have. */
  heldVersion(): string | undefined
}

/** One line of `--json` each; the log says the same for people. */
export type WatchEvent =
  | { event: 'serving'; dest: string; timestamp?: number; files: number }
  /** `durationMs`: the whole catch-up, reading the store included. */
  | ({ event: 'applied' } & Pick<PopReport, 'timestamp' | 'files' | 'bytes' | 'downloaded' | 'unchanged' | 'build' | 'durationMs' | 'headerRules'>)
  | { event: 'up-to-date'; timestamp?: number }
  | { event: 'kept'; timestamp?: number; storeTimestamp: number }
  | { event: 'store-lost'; store: string; error: string }
  | { event: 'store-back'; store: string }
  | { event: 'update-failed'; error: string }
  | { event: 'notifier-connected'; notifier: string }
  | { event: 'notifier-lost'; notifier: string; error: string }

export interface WatchInput {
  /** Makes a store client. Called again after a failure, so that a dead connection is never reused. */
  createStore(): Promise<Store>
  app: string
  dest: string
  entrypoints?: readonly string[]
  concurrency?: number
  retries?: number
  /** How often the store's newest build is read even without a hint. @default 300_000 */
  pollMs?: number
  /** Waits between failed attempts. @default 10 s to 5 min */
  backoff?: BackoffBounds
  notifiers?: readonly Notifier[]
  /** One catch-up, then return (it throws when that fails). */
  once?: boolean
  /** Stops the watch: a swap under way completes, downloads under way are dropped with their directory. */
  signal?: AbortSignal
  /** The longest one catch-up (read the store, download, swap) may take before it counts as a failure. @default 600_000 */
  catchUpTimeoutMs?: number
  logger?: Logger
  onEvent?(event: WatchEvent): void
}

export interface WatchReport {
  app: string
  dest: string
  store: string
  /** Builds applied while it ran. */
  applied: number
  /** The build `dest` holds at the end. */
  timestamp?: number
}

/** Errors that say the store (or the way to it) is down, not that something here is wrong. */
function isOutage(error: unknown, store: Store): boolean {
  for (let current = error; current; current = (current as { cause?: unknown }).cause) {
    if (current instanceof PushCacheError && current.code === 'STORE_UNREACHABLE') return true
    if (store.isTransient(current)) return true
  }
  return false
}

/**
 * Keeps `dest` equal to what `pop` would make of the store, for as long as `signal` lets it:
 * list-then-watch, as Kubernetes' reflector does. It serves what `dest` already holds from the
 * first moment (the store may be down), reads the store now, after every hint and every `pollMs`,
 * and applies a newer build atomically, downloading only what differs. A failure keeps `dest` as
 * it is and retries with backoff; the log says when the store is lost and when it is back, not
 * every retry.
 */
export async function watch(input: WatchInput): Promise<WatchReport> {
  const { app, dest, logger = silentLogger, pollMs = 300_000, catchUpTimeoutMs = 600_000 } = input
  const stop = input.signal ?? new AbortController().signal
  const emit = (event: WatchEvent, line: string, level: 'info' | 'warn' = 'info') => {
    logger[level](line)
    input.onEvent?.(event)
  }
  let store = await input.createStore()
  const display = store.display

  const served = await readServed(dest)
  let held = served.kind === 'build' ? served.state : undefined
  const servedCount = Object.keys(held?.files ?? {}).length
  emit(
    { event: 'serving', dest, timestamp: held?.timestamp, files: servedCount },
    held
      ? `serving build ${held.timestamp ?? '(no manifest)'} of ${app} from ${dest} (${servedCount} files) while watching ${display}`
      : `${dest} holds no build of ${app} yet; watching ${display}`,
  )

  let applied = 0
  let failing: 'outage' | 'local' | undefined
  let reported = { upToDate: false, kept: -1, empty: false }
  const backoff = createBackoff(input.backoff ?? DEFAULT_BACKOFF)

  async function catchUp(signal: AbortSignal): Promise<void> {
    const started = Date.now()
    const snapshot = await abortable(readStoreSnapshot(store, app, input.retries), signal)
    if (snapshot.files.length === 0) {
      if (!reported.empty) logger.warn(`no files of ${app} in ${display} yet; ${dest} stays as it is`)
      reported.empty = true
      return
    }
    const current = await readServed(dest)
    held = current.kind === 'build' ? current.state : undefined
    const sameApp = held?.app === app
    if (sameApp && held?.timestamp !== undefined && snapshot.timestamp !== undefined && snapshot.timestamp < held.timestamp) {
      if (reported.kept !== snapshot.timestamp)
        emit(
          { event: 'kept', timestamp: held.timestamp, storeTimestamp: snapshot.timestamp },
          `the newest build in ${display} (${snapshot.timestamp}) is older than build ${held.timestamp} in ${dest}: kept ${held.timestamp}`,
          'warn',
        )
      reported.kept = snapshot.timestamp
      return
    }
    // The same build and the same names: nothing to fetch. A new build is known by its manifest, which
    // a push writes last; bytes that changed under an old manifest belong to a push still under way
    // (S3 and directory keys are rewritten in place), which its manifest will complete.
    const heldFiles = held?.files ?? {}
    if (
      sameApp &&
      held?.timestamp === snapshot.timestamp &&
      Object.keys(heldFiles).length === snapshot.files.length &&
      snapshot.files.every((file) => file.relpath in heldFiles)
    ) {
      if (!reported.upToDate)
        emit({ event: 'up-to-date', timestamp: held?.timestamp }, `${dest} is up to date with build ${held?.timestamp ?? '(no manifest)'}`)
      reported.upToDate = true
      return
    }
    // The catch-up's duration counts reading the store too, not only the download.
    const report = { ...(await pop({ ...input, store, snapshot, logger: silentLogger, signal })), durationMs: Date.now() - started }
    const after = await readServed(dest)
    held = after.kind === 'build' ? after.state : undefined
    applied++
    reported = { upToDate: true, kept: -1, empty: false }
    emit(
      { event: 'applied', ...pick(report) },
      `caught up to build ${report.timestamp ?? '(no manifest)'}: ${report.downloaded.files} files downloaded (${formatBytes(report.downloaded.bytes)}), ${report.unchanged.files} unchanged, in ${(report.durationMs / 1000).toFixed(1)} s`,
    )
  }

  /** One catch-up; resolves to how long to wait before the next. */
  async function attempt(): Promise<number> {
    const started = Date.now()
    const bounded = deadline(
      stop,
      catchUpTimeoutMs,
      () => new PushCacheError('STORE_UNREACHABLE', `reading ${display} and downloading from it took longer than ${formatAge(catchUpTimeoutMs / 1000)}`),
    )
    try {
      await catchUp(bounded.signal)
      if (failing === 'outage') emit({ event: 'store-back', store: display }, `store ${display} is back`)
      failing = undefined
      backoff.reset()
      // Polls start `pollMs` apart, however long each took: a build is seen within one interval.
      return Math.max(0, pollMs - (Date.now() - started))
    } catch (error) {
      // Stopped: a watch ends well; a single catch-up (`once`) did not happen.
      if (stop.aborted && !input.once) return 0
      if (input.once || (error instanceof PushCacheError && error.code === 'INVALID_OPTION')) throw error
      const kind = isOutage(error, store) ? 'outage' : 'local'
      const reason = describeError(error)
      if (failing !== kind) {
        if (kind === 'outage')
          emit(
            { event: 'store-lost', store: display, error: reason },
            `store ${display} lost: ${reason}. ${dest} keeps serving what it holds; retrying with backoff`,
            'warn',
          )
        else
          emit({ event: 'update-failed', error: reason }, `could not update ${dest}: ${reason}. It keeps serving what it holds; retrying with backoff`, 'warn')
      }
      failing = kind
      // A client that failed may hold a dead connection: the next attempt starts from a fresh one.
      await store.close().catch(() => {})
      store = await input.createStore()
      return backoff.next()
    } finally {
      bounded.dispose()
    }
  }

  let hinted = false
  let wake = new AbortController()
  const notifierStates = new Map<string, 'connected' | 'lost'>()
  const stopNotifiers = new AbortController()
  const listening = input.once
    ? []
    : (input.notifiers ?? []).map((notifier) =>
        notifier.listen(
          {
            hint() {
              hinted = true
              wake.abort()
            },
            status(state, reason) {
              const before = notifierStates.get(notifier.name)
              notifierStates.set(notifier.name, state)
              if (state === before) return
              if (state === 'connected')
                emit({ event: 'notifier-connected', notifier: notifier.name }, `${notifier.name}: ${before === 'lost' ? 'back' : 'connected'}`)
              else
                emit(
                  { event: 'notifier-lost', notifier: notifier.name, error: reason ?? 'unknown' },
                  `${notifier.name}: lost (${reason}); the store is still read every ${formatAge(pollMs / 1000)}`,
                  'warn',
                )
            },
            heldVersion: () => (held?.timestamp === undefined ? undefined : String(held.timestamp)),
          },
          stopNotifiers.signal,
        ),
      )

  try {
    // Bounded by `stop`: every pass either catches up or waits.
    while (!stop.aborted) {
      hinted = false
      wake = new AbortController()
      const wait = await attempt()
      if (input.once) break
      if (!hinted) await pause(wait, stop, wake.signal)
    }
  } finally {
    stopNotifiers.abort()
    await Promise.all(listening)
    await store.close().catch(() => {})
  }
  return { app, dest, store: display, applied, timestamp: held?.timestamp }
}

function pick({ timestamp, files, bytes, downloaded, unchanged, build, durationMs, headerRules }: PopReport) {
  return { timestamp, files, bytes, downloaded, unchanged, build, durationMs, headerRules }
}
