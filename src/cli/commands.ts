import { resolve } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { vwatchPoll } from '../core/announce/vwatch'
import { invalidOption, PushCacheError, redact } from '../core/model/errors'
import type { Notifier } from '../core/model/notifier'
import { formatBytes } from '../core/model/progress'
import { type PruneReport, prune } from '../core/prune/prune'
import { collectFiles } from '../core/push/collect-files'
import { populate } from '../core/push/populate'
import type { PopulateReport } from '../core/push/report'
import { pop } from '../core/serve/pop'
import { DEFAULT_CATCH_UP_MS, type WatchEvent, watch } from '../core/serve/watch'
import { listBuilds, type StoredBuild } from '../core/store/builds'
import type { Store } from '../core/store/store'
import { formatAge } from '../core/util/duration'
import type { Logger } from '../core/util/logger'
import type { ResolvedOptions } from '../options'
import type { WatchMonitor } from '../sidecar/monitor'
import { createStore, isValkeyUrl, preloadDriver } from '../stores'
import type { WatchSettings } from './flags'
import { createProgress, type Progress } from './progress'
import { StoppedBySignal, type StopSignal, untilSignalled } from './signals'
import { withOpenStore } from './store'

export interface Context {
  options: ResolvedOptions
  logger: Logger
  /** A person watches a terminal: draw a progress bar. */
  interactive: boolean
  /** Text for stdout when not in `--json` mode. */
  print(line: string): void
  /** One JSON line on stdout per event in `--json` mode (watch). */
  emit(event: WatchEvent): void
}

/** Each command returns the report that `--json` prints. */
type Report = object

/** A bar or plain progress lines for the work, stopped however it ends; the work logs through the bar's logger. */
async function withProgress<T>(
  { logger, interactive, options }: Context,
  work: (onProgress: Progress['onProgress'], logger: Logger) => Promise<T>,
): Promise<T> {
  const progress = await createProgress(logger, interactive, options.debug)
  try {
    return await work(progress.onProgress, progress.logger)
  } finally {
    progress.stop()
  }
}

/** From this many files on, a push sizes V8's heap for memory (see populateCommand). */
export const LARGE_BUILD_FILES = 20_000
/**
 * While the build is read, V8 holds its young generation at its first size (it grows to 2 x 16 MiB
 * while much of what it allocates survives, as the walk of a large build does, and never gives it
 * back: once grown, holding it comes too late) and sizes its heap for memory: a limit set by a full
 * collection during the walk of a large build, sized for speed (up to 4x what was live), let the
 * heap grow to ~82 MB around the read of the newest manifest before the next (~64 MB live).
 */
export const READING_BUILD_V8_FLAGS = '--semi-space-growth-factor=1 --optimize-for-size'
/** A small build, once read: V8 sized for speed again, its young generation let grow (V8's factor). */
export const SMALL_BUILD_V8_FLAGS = '--semi-space-growth-factor=2 --no-optimize-for-size'

export async function populateCommand(dir: string, context: Context): Promise<Report> {
  const { options, logger } = context
  preloadDriver(options.store)
  setFlagsFromString(READING_BUILD_V8_FLAGS)
  // Read the directory before touching the store: a wrong path must leave the store untouched.
  const files = await collectFiles(resolve(dir), undefined, logger)
  if (files.length === 0)
    throw new PushCacheError('NO_FILES', `The directory ${dir} holds no files: nothing to push. Build first, or point to the directory the build writes.`)
  // V8 sizes its heap for speed: a push of 100,000 files held ~76 MB live at its peak in ~140 MB of
  // heap (peak RSS 2.6-3.3x a 2,000-file push's; 378 MiB on S3, 178 sized for memory). Sized for
  // memory, a 2,000-file push to S3 took ~15% more CPU and one to Valkey ~60%: only large builds
  // stay so.
  if (files.length < LARGE_BUILD_FILES) setFlagsFromString(SMALL_BUILD_V8_FLAGS)
  const stopped = (signal: StopSignal) =>
    new StoppedBySignal(
      signal,
      `Stopped by ${signal}: no upload was started after it, and no entrypoint or manifest of build ${options.timestamp} was written unless the build was already complete. Push again.`,
    )
  return withProgress(context, (onProgress, progressLogger) =>
    withOpenStore(options, progressLogger, async (store, logger) => {
      const report = await untilSignalled(stopped, (signal) => populate({ store, options, files, logger, onProgress, signal }))
      return options.dryRun && !report.skipped ? dryRunSummary(store, options, report, logger) : report
    }),
  )
}

/**
 * What a `--dry-run` would have done, in one line (and in the report): the files, bytes, new and
 * changed, the entrypoints, the manifest, and what the prune after it would delete.
 */
async function dryRunSummary(store: Store, options: ResolvedOptions, report: PopulateReport, logger: Logger): Promise<PopulateReport> {
  const entrypoints = report.entrypoints.length > 0 ? `${report.entrypoints.join(', ')} last, then ` : ''
  let pruned: PruneReport | undefined
  if (options.prune) {
    // The pushed build would be the newest, and take one of the `keep` places.
    const rule = { ...options.prune, keep: Math.max(1, options.prune.keep - 1), now: Math.floor(Date.now() / 1000) }
    pruned = await prune({ store, app: options.app, rule, entrypoints: options.entrypoint, retries: options.retries, dryRun: true, logger })
  }
  const pruning = pruned ? `; a prune would delete ${pruned.builds.length} builds (${pruned.keys.length} files)` : ''
  logger.info(
    `dry run: would push ${report.uploaded} files (${formatBytes(report.bytes)}: ${report.added} new, ${report.changed} changed) of ${report.app} to ${report.store}, ` +
      `${report.unchanged} unchanged (${formatBytes(report.unchangedBytes)}) skipped; ${entrypoints}the manifest ${report.manifestKey}${pruning}. Nothing was written.`,
  )
  return { ...report, ...(pruned && { pruned }) }
}

/** A pop or watch stopped before its switch: `dest` as it was. */
const stoppedBeforeSwitch = (dest: string) => (signal: StopSignal) =>
  new PushCacheError('DOWNLOAD_FAILED', `Stopped by ${signal} before the new build was in place: ${dest} was left as it was.`)

export async function popCommand(dest: string, context: Context): Promise<Report> {
  const { options } = context
  return withProgress(context, (onProgress, progressLogger) =>
    withOpenStore(options, progressLogger, (store, logger) =>
      untilSignalled(stoppedBeforeSwitch(dest), (signal) =>
        pop({
          store,
          app: options.app,
          dest: resolve(dest),
          entrypoints: options.entrypoint,
          concurrency: options.concurrency,
          retries: options.retries,
          logger,
          onProgress,
          signal,
        }),
      ),
    ),
  )
}

export async function watchCommand(dest: string, context: Context, settings: WatchSettings): Promise<Report> {
  const { options, logger, emit } = context
  const { pollMs, backoff, once } = settings
  const notifiers: Notifier[] = []
  if (settings.vwatch) notifiers.push(vwatchPoll({ url: settings.vwatch, name: settings.watchName ?? `push-cache/${options.app}`, backoff }))
  if (settings.channel) {
    if (!isValkeyUrl(options.store))
      throw invalidOption(
        '--channel',
        `needs a Valkey store, and ${redact(options.store)} is not one`,
        'Drop --channel (the store is polled anyway), or use --vwatch to hear of new builds at once.',
      )
    const { valkeyChannel } = await import('../stores/valkey-subscriber')
    notifiers.push(
      valkeyChannel({
        url: options.store,
        options: options.valkey,
        channel: settings.channel,
        app: options.app,
        backoff,
        connectTimeout: options.connectTimeout,
      }),
    )
  }
  const monitor = settings.listen === undefined ? undefined : await listening(settings.listen, settings, options.app, logger)
  try {
    return await untilSignalled(stoppedBeforeSwitch(dest), (signal) =>
      watch({
        // No fail-fast check of the store here: a watch starts serving what dest holds even while the store is down.
        createStore: () => createStore(options.store, options),
        app: options.app,
        dest: resolve(dest),
        entrypoints: options.entrypoint,
        concurrency: options.concurrency,
        retries: options.retries,
        pollMs,
        backoff,
        notifiers,
        once,
        signal,
        logger,
        onEvent(event) {
          emit(event)
          monitor?.onEvent(event)
        },
        onAttempt: monitor?.attempted,
      }),
    )
  } finally {
    await monitor?.close()
  }
}

async function listening(address: string, { pollMs, backoff }: WatchSettings, app: string, logger: Logger): Promise<WatchMonitor> {
  // Imported here: prom-client costs every other command ~70 ms of start-up.
  const { createWatchMonitor } = await import('../sidecar/monitor')
  // Alive while an attempt ends within a poll, the longest backoff and one catch-up, with a minute to spare.
  const monitor = createWatchMonitor({ app, staleAfterMs: Math.max(pollMs, backoff.maxMs) + DEFAULT_CATCH_UP_MS + 60_000 })
  await monitor.listen(address)
  logger.info(`serving /healthz, /readyz and /metrics on http://${monitor.address}`)
  return monitor
}

export async function pruneCommand({ options, logger }: Context): Promise<Report> {
  // toOptions gives the prune command a rule always: `--older-than` and `--keep`, or their defaults.
  if (!options.prune) throw new Error('prune needs a pruning rule')
  const rule = { ...options.prune, now: Math.floor(Date.now() / 1000) }
  const report = await withOpenStore(options, logger, (store, logger) =>
    prune({ store, app: options.app, rule, entrypoints: options.entrypoint, retries: options.retries, dryRun: options.dryRun, logger }),
  )
  // A prune job that never prunes must not look green: the store would only grow.
  if (report.aborted) throw new PushCacheError('PRUNE_FAILED', report.aborted)
  if (report.dryRun || report.builds.length === 0)
    logger.info(
      `${report.dryRun ? 'would prune' : 'pruned'} ${report.builds.length} builds (${report.keys.length} files) of ${options.app}, kept ${report.kept}`,
    )
  return report
}

/** Sum of the sizes the manifest records; undefined for manifests written without them (valpop). */
function bytesOf(build: StoredBuild): number | undefined {
  const sizes = build.manifest?.details?.size ?? []
  return sizes.length > 0 ? sizes.reduce<number>((sum, size) => sum + (size ?? 0), 0) : undefined
}

export async function lsCommand({ options, logger, print }: Context): Promise<Report> {
  const now = Math.floor(Date.now() / 1000)
  const { display, stored } = await withOpenStore(options, logger, async (store) => ({
    display: store.display,
    stored: await listBuilds(store, options.app, options.retries),
  }))
  const builds = stored.map((build) => ({
    timestamp: build.timestamp,
    date: new Date(build.timestamp * 1000).toISOString(),
    ageSeconds: now - build.timestamp,
    files: build.files.length,
    bytes: bytesOf(build),
    image: build.manifest?.image,
    complete: build.complete,
  }))
  if (builds.length === 0) print(`No builds of ${options.app} in ${display}.`)
  else {
    const rows = [['TIMESTAMP', 'DATE', 'AGE', 'FILES', 'BYTES', 'IMAGE']]
    for (const build of builds)
      rows.push([
        String(build.timestamp),
        build.date,
        formatAge(build.ageSeconds),
        String(build.files),
        build.bytes === undefined ? '-' : formatBytes(build.bytes),
        `${build.image ?? '-'}${build.complete ? '' : ' (incomplete)'}`,
      ])
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
    for (const row of rows)
      print(
        row
          .map((cell, column) => cell.padEnd(widths[column]!))
          .join('  ')
          .trimEnd(),
      )
  }
  return { app: options.app, store: display, builds }
}
