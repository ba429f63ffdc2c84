import { describeError, PushCacheError } from '../model/errors'
import type { Notifier } from '../model/notifier'
import { formatBytes } from '../model/progress'
import type { Store } from '../store/store'
import { type BackoffBounds, createBackoff, DEFAULT_BACKOFF, deadline, pause } from '../util/backoff'
import { abortable } from '../util/concurrency'
import { formatAge } from '../util/duration'
import { type Logger, silentLogger } from '../util/logger'
import { type PopReport, pop, readStore, type SnapshotReading, type StoreSnapshot } from './pop'
import { type BuildState, readServed } from './served-dir'

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
  /** After every catch-up attempt, quiet or not: `ok` when the store was read (a sidecar's liveness and freshness). */
  onAttempt?(ok: boolean): void
}

/** The longest one catch-up may take unless `catchUpTimeoutMs` says otherwise. */
export const DEFAULT_CATCH_UP_MS = 600_000

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

/** What a catch-up finds, compared with what `dest` holds: a pure decision, tested on its own. */
export type CatchUpDecision = 'empty' | 'kept' | 'up-to-date' | 'apply'

export function decideCatchUp(app: string, snapshot: Pick<StoreSnapshot, 'files' | 'timestamp'>, held: BuildState | undefined): CatchUpDecision {
  if (snapshot.files.length === 0) return 'empty'
  const sameApp = held?.app === app
  // A store whose newest build is older than what dest serves (a restored snapshot) never replaces it.
  if (sameApp && held?.timestamp !== undefined && snapshot.timestamp !== undefined && snapshot.timestamp < held.timestamp) return 'kept'
  // The same build and the same names: nothing to fetch. A new build is known by its manifest, which
  // a push writes last; bytes that changed under an old manifest belong to a push still under way
  // (S3 and directory keys are rewritten in place), which its manifest will complete.
  const heldFiles = held?.files ?? {}
  const same =
    sameApp &&
    held?.timestamp === snapshot.timestamp &&
    Object.keys(heldFiles).length === snapshot.files.length &&
    snapshot.files.every((file) => file.relpath in heldFiles)
  return same ? 'up-to-date' : 'apply'
}

/** One watch's state between its steps: the store client (renewed after a failure), what dest holds, what was said. */
interface Watching {
  input: WatchInput
  logger: Logger
  stop: AbortSignal
  store: Store
  display: string
  held?: BuildState
  applied: number
  failing?: 'outage' | 'local'
  /** Said once until something changes: the log reports changes, not every poll. */
  reported: { upToDate: boolean; kept: number; empty: boolean }
  backoff: ReturnType<typeof createBackoff>
  emit(event: WatchEvent, line: string, level?: 'info' | 'warn'): void
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
  const logger = input.logger ?? silentLogger
  const store = await input.createStore()
  const watching: Watching = {
    input,
    logger,
    stop: input.signal ?? new AbortController().signal,
    store,
    display: store.display,
    applied: 0,
    reported: { upToDate: false, kept: -1, empty: false },
    backoff: createBackoff(input.backoff ?? DEFAULT_BACKOFF),
    emit(event, line, level = 'info') {
      logger[level](line)
      input.onEvent?.(event)
    },
  }
  await announceServing(watching)
  const wake = wakeOnHints(watching)
  try {
    // Bounded by `stop`: every pass either catches up or waits.
    while (!watching.stop.aborted) {
      wake.rearm()
      const wait = await attempt(watching)
      if (input.once) break
      if (!wake.hinted()) await pause(wait, watching.stop, wake.signal())
    }
  } finally {
    await wake.close()
    await watching.store.close().catch(() => {})
  }
  return { app: input.app, dest: input.dest, store: watching.display, applied: watching.applied, timestamp: watching.held?.timestamp }
}

/** Offline first: what dest holds is served (and said) before the store is read. */
async function announceServing(watching: Watching): Promise<void> {
  const { input, display } = watching
  watching.held = await heldBuild(input.dest)
  const files = Object.keys(watching.held?.files ?? {}).length
  watching.emit(
    { event: 'serving', dest: input.dest, timestamp: watching.held?.timestamp, files },
    watching.held
      ? `serving build ${watching.held.timestamp ?? '(no manifest)'} of ${input.app} from ${input.dest} (${files} files) while watching ${display}`
      : `${input.dest} holds no build of ${input.app} yet; watching ${display}`,
  )
}

/** One catch-up within its deadline; resolves to how long to wait before the next. */
async function attempt(watching: Watching): Promise<number> {
  const { input, stop, display } = watching
  const { pollMs = 300_000, catchUpTimeoutMs = DEFAULT_CATCH_UP_MS } = input
  const started = Date.now()
  const bounded = deadline(
    stop,
    catchUpTimeoutMs,
    () => new PushCacheError('STORE_UNREACHABLE', `reading ${display} and downloading from it took longer than ${formatAge(catchUpTimeoutMs / 1000)}`),
  )
  try {
    await catchUp(watching, bounded.signal)
    input.onAttempt?.(true)
    if (watching.failing === 'outage') watching.emit({ event: 'store-back', store: display }, `store ${display} is back`)
    watching.failing = undefined
    watching.backoff.reset()
    // Polls start `pollMs` apart, however long each took: a build is seen within one interval.
    return Math.max(0, pollMs - (Date.now() - started))
  } catch (error) {
    // Stopped: a watch ends well; a single catch-up (`once`) did not happen.
    if (stop.aborted && !input.once) return 0
    if (input.once || (error instanceof PushCacheError && error.code === 'INVALID_OPTION')) throw error
    input.onAttempt?.(false)
    await recoverFrom(watching, error)
    return watching.backoff.next()
  } finally {
    bounded.dispose()
  }
}

/** Reads the store and, when it holds a build dest should serve instead, pops it. */
async function catchUp(watching: Watching, signal: AbortSignal): Promise<void> {
  const { input, logger, display, reported } = watching
  const { app, dest } = input
  const started = Date.now()
  const reading = readStore(watching.store, app, input.retries, Object.keys(watching.held?.files ?? {}))
  const snapshot = await decisiveSnapshot(watching, reading, signal)
  const held = watching.held
  switch (decideCatchUp(app, snapshot, held)) {
    case 'empty':
      if (!reported.empty) logger.warn(`no files of ${app} in ${display} yet; ${dest} stays as it is`)
      reported.empty = true
      return
    case 'kept':
      if (reported.kept !== snapshot.timestamp)
        watching.emit(
          { event: 'kept', timestamp: held?.timestamp, storeTimestamp: snapshot.timestamp! },
          `the newest build in ${display} (${snapshot.timestamp}) is older than build ${held?.timestamp} in ${dest}: kept ${held?.timestamp}`,
          'warn',
        )
      reported.kept = snapshot.timestamp!
      return
    case 'up-to-date':
      if (!reported.upToDate)
        watching.emit({ event: 'up-to-date', timestamp: held?.timestamp }, `${dest} is up to date with build ${held?.timestamp ?? '(no manifest)'}`)
      reported.upToDate = true
      return
    case 'apply':
      return apply(watching, reading, started, signal)
  }
}

/**
 * What decides the catch-up, with `watching.held` read again (another writer of dest, a pop, may
 * have switched it since). A newest manifest other than the build dest holds decides alone (the
 * listing could only add files to it), so that its downloads start before the listing ends; the
 * same one (or none) waits for the listing, which tells whether files were added.
 */
async function decisiveSnapshot(watching: Watching, reading: SnapshotReading, signal: AbortSignal): Promise<StoreSnapshot> {
  const { dest } = watching.input
  const pinned = await abortable(reading.pinned, signal)
  const decides = () => pinned.files.length > 0 && pinned.timestamp !== watching.held?.timestamp
  if (decides()) {
    watching.held = await heldBuild(dest)
    return decides() ? pinned : abortable(reading.whole, signal)
  }
  const whole = await abortable(reading.whole, signal)
  if (whole.files.length > 0) watching.held = await heldBuild(dest)
  return whole
}

async function apply(watching: Watching, reading: SnapshotReading, started: number, signal: AbortSignal): Promise<void> {
  const { input } = watching
  const before = await readServed(input.dest)
  // The catch-up's duration counts reading the store too, not only the download.
  const report = { ...(await pop({ ...input, store: watching.store, reading, logger: silentLogger, signal })), durationMs: Date.now() - started }
  watching.held = await heldBuild(input.dest)
  watching.reported = { upToDate: true, kept: -1, empty: false }
  // A newer build with the same files: dest already serves them, from the directory it had.
  if (before.kind === 'build' && report.build === before.id) {
    watching.emit(
      { event: 'up-to-date', timestamp: report.timestamp },
      `build ${report.timestamp ?? '(no manifest)'} holds the files ${input.dest} serves: nothing to switch`,
    )
    return
  }
  watching.applied++
  watching.emit(
    { event: 'applied', ...pick(report) },
    `caught up to build ${report.timestamp ?? '(no manifest)'}: ${report.downloaded.files} files downloaded (${formatBytes(report.downloaded.bytes)}), ${report.unchanged.files} unchanged, in ${(report.durationMs / 1000).toFixed(1)} s`,
  )
}

/** Says what was lost (once, until it is back) and starts the next attempt from a fresh client. */
async function recoverFrom(watching: Watching, error: unknown): Promise<void> {
  const { input, display } = watching
  const kind = isOutage(error, watching.store) ? 'outage' : 'local'
  const reason = describeError(error)
  if (watching.failing !== kind) {
    if (kind === 'outage')
      watching.emit(
        { event: 'store-lost', store: display, error: reason },
        `store ${display} lost: ${reason}. ${input.dest} keeps serving what it holds; retrying with backoff`,
        'warn',
      )
    else
      watching.emit(
        { event: 'update-failed', error: reason },
        `could not update ${input.dest}: ${reason}. It keeps serving what it holds; retrying with backoff`,
        'warn',
      )
  }
  watching.failing = kind
  // A client that failed may hold a dead connection: the next attempt starts from a fresh one.
  await watching.store.close().catch(() => {})
  watching.store = await input.createStore()
}

/** Starts the notifiers (none with `once`): a hint cuts the wait short; their state changes are said once. */
function wakeOnHints(watching: Watching) {
  const { input } = watching
  let hinted = false
  let wake = new AbortController()
  const states = new Map<string, 'connected' | 'lost'>()
  const stopNotifiers = new AbortController()
  const status = (notifier: Notifier) => (state: 'connected' | 'lost', reason?: string) => {
    const before = states.get(notifier.name)
    states.set(notifier.name, state)
    if (state === before) return
    if (state === 'connected')
      watching.emit({ event: 'notifier-connected', notifier: notifier.name }, `${notifier.name}: ${before === 'lost' ? 'back' : 'connected'}`)
    else
      watching.emit(
        { event: 'notifier-lost', notifier: notifier.name, error: reason ?? 'unknown' },
        `${notifier.name}: lost (${reason}); the store is still read every ${formatAge((input.pollMs ?? 300_000) / 1000)}`,
        'warn',
      )
  }
  const listening = (input.once ? [] : (input.notifiers ?? [])).map((notifier) =>
    notifier.listen(
      {
        hint() {
          hinted = true
          wake.abort()
        },
        status: status(notifier),
        heldVersion: () => (watching.held?.timestamp === undefined ? undefined : String(watching.held.timestamp)),
      },
      stopNotifiers.signal,
    ),
  )
  return {
    rearm() {
      hinted = false
      wake = new AbortController()
    },
    hinted: () => hinted,
    signal: () => wake.signal,
    async close() {
      stopNotifiers.abort()
      await Promise.all(listening)
    },
  }
}

async function heldBuild(dest: string): Promise<BuildState | undefined> {
  const served = await readServed(dest)
  return served.kind === 'build' ? served.state : undefined
}

function pick({ timestamp, files, bytes, downloaded, unchanged, build, durationMs, headerRules }: PopReport) {
  return { timestamp, files, bytes, downloaded, unchanged, build, durationMs, headerRules }
}
