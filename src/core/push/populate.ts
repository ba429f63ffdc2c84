import { announce } from '../announce/announce'
import { describeError, PushCacheError } from '../model/errors'
import { entryOf, indexIn } from '../model/manifest'
import type { ResolvedCoreOptions } from '../model/options'
import type { ProgressEvent } from '../model/progress'
import { prune } from '../prune/prune'
import { type BuildWrite, buildWriteFor, type PendingFiles } from '../store/build-write'
import { newestBuild, type StoredBuild } from '../store/builds'
import { layoutOf } from '../store/layout'
import type { Store } from '../store/store'
import { takeWriterLock, type WriterLockTiming } from '../store/writer-lock'
import { md5File } from '../util/digest'
import { dropSpareBuffers } from '../util/file-buffers'
import { type Logger, silentLogger } from '../util/logger'
import { buildManifest, withManifestBody } from './build-manifest'
import { warnOfEntrypoints } from './entrypoints'
import { type BuildFile, planUpload, type UploadPlan } from './plan'
import { type HashedUpload, planPhase, type StorePlan } from './plan-against-store'
import { countPlanned, countWrittenOnly, emptyReport, type PopulateReport, pushedLine } from './report'
import { createPushRun, type PushRun } from './run'
import { createFileWriter, type FileWriter } from './write-files'

export type { PopulateReport } from './report'

export interface PopulateInput {
  store: Store
  options: ResolvedCoreOptions
  files: readonly BuildFile[]
  logger?: Logger
  onProgress?: (event: ProgressEvent) => void
  now?: () => number
  /** How long the app's writer lock lives unrenewed and how long to wait for it (tests shorten them). */
  writerLock?: WriterLockTiming
  /**
   * Aborted (the CLI's SIGTERM/SIGINT): no upload starts after it, nor the entrypoints or the
   * manifest; the push fails with the signal's reason, as a failed push would leave the store.
   */
  signal?: AbortSignal
}

/**
 * Pushes one build in phases, so that every file served at any moment names only files already in
 * place: files the store does not hold yet, then files that replace others, then the entrypoints,
 * then the manifest; files the store holds with the same content and headers are not written.
 * A failure at any step leaves no entrypoint and no manifest of this build; a failure before the
 * second phase leaves everything served as it was.
 */
export async function populate({
  store,
  options,
  files,
  logger = silentLogger,
  onProgress,
  now = Date.now,
  writerLock,
  signal,
}: PopulateInput): Promise<PopulateReport> {
  const started = now()
  const { plan, all, report } = planBuild(store, options, files, logger)
  const newest = await newestIfImageAsked(store, options, logger)
  if (options.image && newest?.manifest?.image === options.image) {
    logger.info(`Build ${newest.timestamp} already records image ${options.image}; nothing to push.`)
    return { ...report, skipped: 'same-image', durationMs: now() - started }
  }
  const run = createPushRun(store, options, logger, now, report)
  const build = buildWriteFor({
    store,
    app: options.app,
    timestamp: options.timestamp,
    retries: options.retries,
    dryRun: options.dryRun,
    retry: run.retry,
    now,
  })
  let writer: FileWriter | undefined
  /** The manifest, once this push wrote it: a failure after that takes it back too. */
  const ownManifest: { key: string }[] = []
  // A dry run writes nothing, not even the lock: its plan may race a writer, and says so by being a plan.
  const lock = options.dryRun
    ? undefined
    : await takeWriterLock({ store, app: options.app, what: 'push', retries: options.retries, timing: writerLock, logger, now })
  try {
    const planned = await planPhase(run, all, newest, build.comparesHeaders)
    if (await alreadyPushed(run, all, planned.own)) return { ...report, skipped: 'same-build', durationMs: now() - started }
    // A mark a dead push left at this timestamp is taken over, and removed once the manifest is in.
    await build.begin(toWriteOf(planned).length > 0 || planned.ownLocked)
    countPlanned(report, planned.sync)
    if (options.dryRun) {
      logWouldPush(logger, planned)
      return { ...report, durationMs: now() - started }
    }
    writer = createFileWriter(run, build, { files: report.uploaded, bytes: report.bytes }, onProgress, signal)
    // The plan's listing tells whether a newer build serves what this one would replace (see writeChanged).
    report.superseded = await build.superseded(planned.newer)
    const entrypoints = report.superseded ? [] : entrypointsToWrite(planned, plan)
    const record = await pendingRecordOf(entrypoints, plan)
    await bothSettled(writeNew(writer, planned), record && build.recordPendingEarly(record))
    await lock?.confirm('its changed files')
    await writeChanged(writer, planned, report)
    signal?.throwIfAborted()
    await lock?.confirm('its entrypoints')
    await writeEntrypoints(run, build, writer, entrypoints, record, report)
    signal?.throwIfAborted()
    await lock?.confirm('its manifest')
    await writeManifest(run, build, all, writer, report, ownManifest)
    await build.complete(run.logger, () => lock?.release() ?? Promise.resolve())
  } catch (error) {
    await build.abandon([...(writer?.written ?? []), ...ownManifest], logger)
    const note = build.pendingNote()
    // Stopped by a signal: its reason, whatever the request that noticed it threw.
    const cause = signal?.aborted ? signal.reason : error
    throw note ? new PushCacheError('UPLOAD_FAILED', `${describeError(cause)}. ${note}`, { cause }) : cause
  } finally {
    // Once: a complete build's was released by build.complete.
    await lock?.release()
    dropSpareBuffers()
  }
  logger.info(pushedLine(report))
  await pruneAfterPush(run, report, writerLock)
  await announceBuild(run, report)
  return { ...report, durationMs: now() - started }
}

/** The build's files as this push writes them, and its report so far; none left by include/exclude is a usage error. */
function planBuild(store: Store, options: ResolvedCoreOptions, files: readonly BuildFile[], logger: Logger) {
  const layout = layoutOf(store)
  const plan = planUpload(files, options, layout)
  warnOfEntrypoints(plan, options.entrypoint, logger)
  for (const file of plan.excluded) logger.debug(`plan: ${file.relpath} is left out by include/exclude`)
  const all = [...plan.assets, ...plan.entrypoints]
  if (all.length === 0)
    throw new PushCacheError(
      'NO_FILES',
      `No files to push for app ${options.app}: ${files.length} found, all left out by include/exclude. Check the output directory and the \`include\`/\`exclude\` options.`,
    )
  return { plan, all, report: emptyReport(options, store.display, layout.manifestKey(options.app, options.timestamp), plan) }
}

/** The newest build, read only when an image is given (valpop's duplicate-image skip); `null`: read, and there is none. The plan reuses it. */
async function newestIfImageAsked(store: Store, options: ResolvedCoreOptions, logger: Logger): Promise<StoredBuild | null | undefined> {
  if (!options.image) return undefined
  try {
    return (await newestBuild(store, options.app, options.retries)) ?? null
  } catch (error) {
    // A manifest nobody can read must not stop every push (the prune that meets it says what to do).
    if (!(error instanceof PushCacheError && error.code === 'MANIFEST_UNREADABLE')) throw error
    logger.warn(`${describeError(error)} The duplicate-image check is skipped: build ${options.timestamp} is pushed.`)
    return undefined
  }
}

/**
 * A timestamp names one build for good: readers, prunes and valpop take the manifest at it for the
 * build. Pushed again with the same files (a re-run CI job), it is a no-op; with other files, it is
 * refused before anything is written, for a push never rewrites nor hides a complete build. The
 * plan read `stored` under the writer lock, so no other push lands it meanwhile.
 */
async function alreadyPushed({ store, options, logger }: PushRun, files: readonly HashedUpload[], stored: StoredBuild | undefined): Promise<boolean> {
  if (!stored) return false
  // Searched, not a Set: one of 100,000 relpaths held ~3 MB more.
  const ours = files.map((file) => file.relpath)
  let differ = stored.files.filter((relpath) => indexIn(ours, relpath) === -1).length
  for (const file of files) {
    // Undefined too for a relpath the stored build does not name.
    const recorded = entryOf(stored.manifest, file.relpath)?.md5
    if (recorded === undefined) differ++
    else {
      file.md5 ??= await md5File(file.path)
      if (recorded !== file.md5) differ++
    }
  }
  if (differ > 0)
    throw new PushCacheError(
      'UPLOAD_FAILED',
      `Build ${options.timestamp} of ${options.app} is already in ${store.display}, with other files (${differ} differ): a push never rewrites a complete build. Push this one with another timestamp (--timestamp, BUILD_TIMESTAMP or SOURCE_DATE_EPOCH), or prune build ${options.timestamp} first. Nothing was written.`,
    )
  logger.info(`Build ${options.timestamp} of ${options.app} is already in ${store.display} with the same files; nothing to push.`)
  return true
}

const toWriteOf = ({ sync }: StorePlan) => [...sync.added, ...sync.changed]

/** The entrypoints the store does not hold as they are, in the order the options name them. */
const entrypointsToWrite = (planned: StorePlan, plan: UploadPlan) =>
  toWriteOf(planned)
    .filter((file) => file.entrypoint)
    .sort((a, b) => plan.entrypoints.indexOf(a) - plan.entrypoints.indexOf(b))

/** What the pending record of `entrypoints` names (see BuildWrite.recordPending); none when there is none to write. */
async function pendingRecordOf(entrypoints: readonly HashedUpload[], plan: UploadPlan): Promise<PendingFiles | undefined> {
  if (entrypoints.length === 0) return undefined
  for (const file of entrypoints) file.md5 ??= await md5File(file.path)
  return {
    files: plan.assets.concat(plan.entrypoints).map((file) => file.relpath),
    entrypoints: Object.fromEntries(entrypoints.map((file) => [file.relpath, file.md5!])),
  }
}

/** Both at once; once both are over, the first failure: nothing of either is left in flight. */
async function bothSettled(first: Promise<void>, second: Promise<void> | undefined): Promise<void> {
  const failed = (await Promise.allSettled([first, second])).find((outcome) => outcome.status === 'rejected')
  if (failed) throw failed.reason
}

function logWouldPush(logger: Logger, planned: StorePlan): void {
  for (const file of toWriteOf(planned)) logger.info(`would push ${file.key} (${file.size} B, ${file.contentType}, ${file.cacheControl})`)
}

/** Files the store does not hold yet, but the entrypoints. Versioned keys are all new: nobody reads them yet. */
async function writeNew(writer: FileWriter, { sync }: StorePlan): Promise<void> {
  await writer.putAll(
    'added',
    sync.added.filter((file) => !file.entrypoint),
  )
}

/**
 * Files that replace others, but the entrypoints; none when a newer build already serves them.
 * The plan's listing tells whether one does, without asking the store again: every push writes its
 * manifest under the writer lock, confirmed held since the plan right before this (a push that lost
 * it while writing its new files stops there), so no newer build can have come since.
 */
async function writeChanged(writer: FileWriter, { sync }: StorePlan, report: PopulateReport): Promise<void> {
  if (!report.superseded)
    await writer.putAll(
      'changed',
      sync.changed.filter((file) => !file.entrypoint),
    )
}

/**
 * Entrypoints name the other files: they are published only now that all of them are in place,
 * unless a newer build serves them (the plan's answer, the writer lock confirmed since: see {@link writeChanged}).
 */
async function writeEntrypoints(
  run: PushRun,
  build: BuildWrite,
  writer: FileWriter,
  entrypoints: readonly HashedUpload[],
  record: PendingFiles | undefined,
  report: PopulateReport,
): Promise<void> {
  const { store, options, logger } = run
  if (report.superseded) {
    countWrittenOnly(report, writer.written)
    logger.warn(
      `a build newer than ${options.timestamp} is in ${store.display}: this build's new files and manifest were written, nothing it would replace (changed files, entrypoints)`,
    )
  } else if (record)
    await run.timed('entrypoints', async () => {
      await build.recordPending(record)
      for (const file of entrypoints) await writer.put(file)
    })
}

/**
 * The manifest goes last: it makes the build complete for readers, pops and prunes. On a versioned
 * store it is written with the build's expiry like every key of the build, and the keys become
 * permanent only now, the manifest last: a push killed before that leaves keys that expire, never
 * permanent keys that no manifest names (issue 16 case 6); its build lock hides the manifest meanwhile.
 */
async function writeManifest(
  run: PushRun,
  build: BuildWrite,
  all: readonly HashedUpload[],
  writer: FileWriter,
  report: PopulateReport,
  written: { key: string }[],
): Promise<void> {
  const { store, options, retry } = run
  const manifest = buildManifest({
    timestamp: options.timestamp,
    image: options.image,
    files: all,
    entrypoints: report.entrypoints,
    recordOf: build.recordOf,
  })
  await run.timed('manifest', async () => {
    const manifestFile = { key: report.manifestKey }
    await withManifestBody(manifest, (body) =>
      retry(report.manifestKey, () =>
        store.put(report.manifestKey, body, {
          contentType: 'application/json; charset=utf-8',
          cacheControl: 'no-cache',
          expiresIn: build.expiresIn,
        }),
      ),
    ).catch((error) => {
      throw new PushCacheError('UPLOAD_FAILED', `Could not write manifest ${report.manifestKey} to ${store.display}: ${describeError(error)}`, { cause: error })
    })
    // From here a failure takes the manifest back with the build's other keys.
    written.push(manifestFile)
    await build.persist(writer.written, 'persisting the written keys')
    await build.persist([manifestFile], 'persisting the manifest')
  })
}

/** The build is in the store: a prune that could not run is reported, not a failed push. */
async function pruneAfterPush({ store, options, logger, now, timed }: PushRun, report: PopulateReport, writerLock?: WriterLockTiming): Promise<void> {
  if (!options.prune) return
  const rule = { ...options.prune, now: Math.floor(now() / 1000) }
  report.pruned = await timed('prune', () =>
    prune({ store, app: options.app, rule, entrypoints: options.entrypoint, retries: options.retries, logger, writerLock }),
  )
  if (report.pruned.aborted) logger.warn(report.pruned.aborted)
}

/** A superseded build wrote no entrypoint: nothing it pushed is served, so there is nothing to announce. */
async function announceBuild({ store, options, logger }: PushRun, report: PopulateReport): Promise<void> {
  if (!report.superseded && (options.announce.vwatch !== undefined || options.announce.channel !== undefined))
    report.announce = await announce({ store, options, manifestKey: report.manifestKey, logger })
}
