import { type AnnounceReport, announce } from '../announce/announce'
import { describeError, PushCacheError } from '../model/errors'
import { type Manifest, type ManifestEntry, serializeManifest } from '../model/manifest'
import type { ResolvedCoreOptions } from '../model/options'
import { createProgressCounter, formatBytes, type ProgressEvent } from '../model/progress'
import { planSync, type SyncPlan } from '../model/sync-plan'
import { GENERATOR } from '../model/version'
import { type PruneReport, prune } from '../prune/prune'
import { newerBuildExists, newestBuild, type StoredBuild } from '../store/builds'
import { readStoreState, type StoredFile } from '../store/held-files'
import { layoutOf, versionedLayout } from '../store/layout'
import { LEASE_SECONDS, type Lease, pruneRunning, takeLease } from '../store/leases'
import type { Store } from '../store/store'
import { forEachLimited, withRetry } from '../util/concurrency'
import { md5, md5File } from '../util/digest'
import { dropSpareBuffers, giveBack, readWhole } from '../util/file-buffers'
import { type Logger, silentLogger } from '../util/logger'
import { entrypointWarnings } from './entrypoints'
import { type BuildFile, type PlannedUpload, planUpload } from './plan'

/** File contents held in memory at once across all uploads in flight; larger files stream. */
const BYTES_IN_FLIGHT = 16 * 1024 * 1024
/** Files hashed at once: enough to keep the disk busy, few enough to leave it to the uploads. */
const HASHING = 8
const DEFAULT_CONCURRENCY = 16

export interface PopulateReport {
  app: string
  store: string
  timestamp: number
  manifestKey: string
  /** Files written (or, with `dryRun`, that would be). */
  uploaded: number
  /** Bytes written (or that would be). */
  bytes: number
  /** Of the files written: names the store did not hold. */
  added: number
  /** Of the files written: names the store held with other content or headers (or unknown ones). */
  changed: number
  /** Files the store already held with the same content and headers: not written. */
  unchanged: number
  unchangedBytes: number
  /** Files that `include`/`exclude` left out. */
  excluded: number
  entrypoints: string[]
  /** Set when the run was skipped because the newest build already records the same image. */
  skipped?: 'same-image'
  /**
   * Set when a newer build was found in a flat store (S3, local): this older one added its new
   * files and its manifest, and replaced nothing served (no changed file, no entrypoint).
   */
  superseded?: boolean
  dryRun: boolean
  durationMs: number
  /** Milliseconds spent in each phase that ran: plan, added, changed, entrypoints, manifest, prune. */
  phases: Partial<Record<'plan' | 'added' | 'changed' | 'entrypoints' | 'manifest' | 'prune', number>>
  pruned?: PruneReport
  /** How the announce of the build went, when `announce` asks for one. */
  announce?: AnnounceReport
}

export interface PopulateInput {
  store: Store
  options: ResolvedCoreOptions
  files: readonly BuildFile[]
  logger?: Logger
  onProgress?: (event: ProgressEvent) => void
  now?: () => number
}

/** The plan hashes only files whose name the store holds; the others are hashed as they are written. */
type HashedUpload = PlannedUpload & { md5?: string }

/**
 * Pushes one build in phases, so that every file served at any moment names only files already in
 * place: files the store does not hold yet, then files that replace others, then the entrypoints,
 * then the manifest; files the store holds with the same content and headers are not written.
 * A failure at any step leaves no entrypoint and no manifest of this build; a failure before the
 * second phase leaves everything served as it was.
 */
export async function populate({ store, options, files, logger = silentLogger, onProgress, now = Date.now }: PopulateInput): Promise<PopulateReport> {
  const started = now()
  const layout = layoutOf(store.layout)
  const plan = planUpload(files, options, layout)
  for (const warning of entrypointWarnings(plan, options.entrypoint)) logger.warn(warning)
  const all = [...plan.assets, ...plan.entrypoints]
  const manifestKey = layout.manifestKey(options.app, options.timestamp)
  const phases: PopulateReport['phases'] = {}
  const report: PopulateReport = {
    app: options.app,
    store: store.display,
    timestamp: options.timestamp,
    manifestKey,
    uploaded: 0,
    bytes: 0,
    added: 0,
    changed: 0,
    unchanged: 0,
    unchangedBytes: 0,
    excluded: plan.excluded.length,
    entrypoints: plan.entrypoints.map((file) => file.relpath),
    dryRun: options.dryRun,
    durationMs: 0,
    phases,
  }
  if (all.length === 0)
    throw new PushCacheError(
      'NO_FILES',
      `No files to push for app ${options.app}: ${files.length} found, all left out by include/exclude. Check the output directory and the \`include\`/\`exclude\` options.`,
    )

  // `null`: read, and there is none; the plan reuses it.
  let newest: StoredBuild | null | undefined
  if (options.image) {
    newest = (await newestBuild(store, options.app, options.retries)) ?? null
    if (newest?.manifest?.image === options.image) {
      logger.info(`Build ${newest.timestamp} already records image ${options.image}; nothing to push.`)
      return { ...report, skipped: 'same-image', durationMs: now() - started }
    }
  }

  const timed = async <T>(phase: keyof PopulateReport['phases'], work: () => Promise<T>): Promise<T> => {
    const start = now()
    try {
      return await work()
    } finally {
      phases[phase] = now() - start
    }
  }
  const retry = <T>(what: string, attempt: () => Promise<T>) =>
    withRetry(attempt, {
      retries: options.retries,
      isTransient: store.isTransient,
      onRetry: (error, count) => logger.warn(`retrying ${what} (${count}/${options.retries}): ${describeError(error)}`),
    })

  const versioned = store.layout === 'versioned'
  const expiresIn = versioned ? store.pendingExpiry?.seconds : undefined
  const ttlOption = store.pendingExpiry?.option
  const lockKey = versionedLayout.lockKey(options.app, options.timestamp)
  // A crashed build's keys must expire before its lock, or readers would take them for a build:
  // the lock lives twice `lockTtl`, and data keys are written only during the first `lockTtl`.
  const lockedAt = now()
  const written: PlannedUpload[] = []
  let lease: Lease | undefined
  try {
    if (versioned && !options.dryRun) await retry(lockKey, () => store.put(lockKey, Buffer.from('in-progress'), { expiresIn: 2 * expiresIn! }))
    const planned = await timed('plan', () =>
      planAgainstStore(store, options, all, newest, logger, retry).catch((error) => {
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `Could not learn what ${store.display} holds for ${options.app}: ${describeError(error)}. Nothing of build ${options.timestamp} was written.`,
          { cause: error },
        )
      }),
    )
    lease = planned.lease
    const { sync, held } = planned
    const toWrite = [...sync.added, ...sync.changed]
    Object.assign(report, {
      uploaded: toWrite.length,
      bytes: sum(toWrite),
      added: sync.added.length,
      changed: sync.changed.length,
      unchanged: sync.unchanged.length,
      unchangedBytes: sum(sync.unchanged),
    })
    if (options.dryRun) {
      for (const file of toWrite) logger.info(`would push ${file.key} (${file.size} B, ${file.contentType}, ${file.cacheControl})`)
      return { ...report, durationMs: now() - started }
    }

    const etags = new Map<string, string>()
    /** Bytes of a file the store holds in memory while it writes it. */
    const heldInMemory = (file: PlannedUpload) => store.bufferedBytes?.(file.size) ?? file.size
    const reuseBuffers = store.releasesBodies === true
    const progress = createProgressCounter({ files: toWrite.length, bytes: report.bytes }, onProgress)
    const put = async (file: HashedUpload) => {
      if (expiresIn && now() - lockedAt > expiresIn * 1000)
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `Build ${options.timestamp} took longer than \`${ttlOption}\` (${expiresIn} s) to write; it was abandoned. Raise \`${ttlOption}\` above the time a push takes.`,
        )
      written.push(file)
      try {
        // A file the plan did not hash is hashed from the bytes sent where the store would hold
        // them all anyway, else read a second time beside the upload: either way, read once more at most.
        const bytes = file.md5 === undefined && heldInMemory(file) >= file.size ? await readWhole(file.path, file.size, reuseBuffers) : undefined
        try {
          if (bytes) file.md5 = md5(bytes)
          const [{ etag }] = await Promise.all([
            retry(file.relpath, () =>
              store.put(file.key, bytes ?? { file: file.path, size: file.size }, { contentType: file.contentType, cacheControl: file.cacheControl, expiresIn }),
            ),
            file.md5 === undefined && md5File(file.path).then((digest) => (file.md5 = digest)),
          ])
          if (etag) etags.set(file.relpath, etag)
        } finally {
          if (bytes && reuseBuffers) giveBack(bytes)
        }
      } catch (error) {
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `Could not push ${file.relpath} to ${store.display} (key ${file.key}): ${describeError(error)}. No entrypoint and no manifest of build ${options.timestamp} were written.`,
          { cause: error },
        )
      }
      logger.debug(`pushed ${file.key}`)
      progress.add(file.relpath, file.size)
    }
    const concurrency = options.concurrency ?? store.concurrency ?? DEFAULT_CONCURRENCY
    const budget = { limit: BYTES_IN_FLIGHT, cost: heldInMemory }
    // Largest first: a big file that started last would finish alone, long after the small ones.
    const largestFirst = (batch: readonly PlannedUpload[]) => [...batch].sort((a, b) => b.size - a.size)
    const putAll = (phase: 'added' | 'changed', batch: readonly PlannedUpload[]) =>
      batch.length > 0 && timed(phase, () => forEachLimited(largestFirst(batch), concurrency, put, budget))

    // Versioned keys are new whatever their content: both phases write keys nobody reads yet.
    await putAll(
      'added',
      sync.added.filter((file) => !file.entrypoint),
    )
    // A flat key holds one build's bytes: an older build pushed after a newer one (a re-run CI job)
    // must not replace what the newer one serves. Versioned readers already take the newest build.
    const supersededBy = async () => !versioned && (await newerBuildExists(store, options.app, options.timestamp, options.retries))
    report.superseded = await supersededBy()
    if (!report.superseded)
      await putAll(
        'changed',
        sync.changed.filter((file) => !file.entrypoint),
      )
    if (versioned) await retry('persisting the written keys', () => persist(store, written, options.timestamp, ttlOption))
    if (lease && !lease.live())
      throw new PushCacheError(
        'UPLOAD_FAILED',
        `Build ${options.timestamp} took longer than ${LEASE_SECONDS / 60 - 1} minutes before its entrypoints: a prune may since have removed files it found unchanged. Push again (or with \`force\`).`,
      )
    // Entrypoints name the other files: they are published only now that all of them are in place.
    const entrypoints = toWrite.filter((file) => file.entrypoint).sort((a, b) => plan.entrypoints.indexOf(a) - plan.entrypoints.indexOf(b))
    report.superseded ||= entrypoints.length > 0 && (await supersededBy())
    if (report.superseded) {
      Object.assign(report, { uploaded: written.length, bytes: sum(written), added: written.length, changed: 0 })
      logger.warn(
        `a build newer than ${options.timestamp} is in ${store.display}: this build's new files and manifest were written, nothing it would replace (changed files, entrypoints)`,
      )
    } else if (entrypoints.length > 0)
      await timed('entrypoints', async () => {
        for (const file of entrypoints) await put(file)
        if (versioned) await retry('persisting the entrypoints', () => persist(store, entrypoints, options.timestamp, ttlOption))
      })

    const unchanged = new Set(sync.unchanged)
    const entry = (file: HashedUpload): ManifestEntry => {
      const reused = unchanged.has(file) ? held.get(file.relpath) : undefined
      return {
        size: file.size,
        contentType: file.contentType,
        cacheControl: file.cacheControl,
        md5: file.md5,
        ...(versioned ? (reused?.version !== undefined ? { version: reused.version } : {}) : { etag: etags.get(file.relpath) ?? reused?.etag }),
      }
    }
    const manifest: Manifest = {
      // Every file of the build, written now or found unchanged: readers pop and prune by it, so
      // files left out by include/exclude are not in it.
      files: all.map((file) => file.relpath).sort(),
      timestamp: options.timestamp,
      ...(options.image ? { image: options.image } : {}),
      entrypoints: report.entrypoints,
      generator: GENERATOR,
      entries: Object.fromEntries([...sync.unchanged, ...toWrite].map((file) => [file.relpath, entry(file)])),
    }
    await timed('manifest', async () => {
      await retry(manifestKey, () =>
        store.put(manifestKey, Buffer.from(serializeManifest(manifest)), { contentType: 'application/json; charset=utf-8', cacheControl: 'no-cache' }),
      )
      if (versioned) await retry(lockKey, () => store.delete([lockKey]))
    })
  } catch (error) {
    if (versioned && !options.dryRun) await abandonVersionedBuild(store, written, lockKey, logger)
    throw error
  } finally {
    await lease?.release()
    dropSpareBuffers()
  }
  logger.info(
    `pushed ${report.uploaded} files (${formatBytes(report.bytes)}: ${report.added} new, ${report.changed} changed) of ${options.app} to ${store.display}, ${report.unchanged} unchanged (${formatBytes(report.unchangedBytes)}) skipped, manifest ${manifestKey}`,
  )

  if (options.prune) {
    const rule = { ...options.prune, now: Math.floor(now() / 1000) }
    report.pruned = await timed('prune', () => prune({ store, app: options.app, rule, entrypoints: options.entrypoint, retries: options.retries, logger }))
    // The build is in the store: a prune that could not run is reported, not a failed push.
    if (report.pruned.aborted) logger.warn(report.pruned.aborted)
  }
  // A superseded build wrote no entrypoint: nothing it pushed is served, so there is nothing to announce.
  if (!report.superseded && (options.announce.vwatch !== undefined || options.announce.channel !== undefined))
    report.announce = await announce({ store, options, manifestKey, logger })
  return { ...report, durationMs: now() - started }
}

const sum = (files: readonly BuildFile[]) => files.reduce((total, file) => total + file.size, 0)

/**
 * Sorts the build's files by what the store holds for them. Unless everything is to be written
 * (`force`, or a prune of the app is running), the push first leases its relpaths, so that a prune
 * starting later keeps them; what it then reads of the store is what it may rely on.
 */
async function planAgainstStore(
  store: Store,
  options: ResolvedCoreOptions,
  files: readonly PlannedUpload[],
  newest: StoredBuild | null | undefined,
  logger: Logger,
  retry: <T>(what: string, attempt: () => Promise<T>) => Promise<T>,
): Promise<{ sync: SyncPlan<HashedUpload>; held: Map<string, StoredFile>; lease?: Lease }> {
  // Hashing starts at once, beside the read of the store; once that read tells which names the
  // store holds, only those are still hashed: a new name is written whatever its bytes.
  let skipNothing = options.force
  let held: Map<string, StoredFile> | undefined
  let failed = false
  const hashing = hashWhere(files, (file) => !skipNothing && !failed && (held === undefined || held.get(file.relpath)?.md5 !== undefined))
  hashing.catch(() => {}) // awaited below; a store error must not leave it unhandled
  let lease: Lease | undefined
  if (!options.force && !options.dryRun) {
    const relpaths = files.map((file) => file.relpath)
    lease = await retry('the lease', () => takeLease(store, options.app, 'push', relpaths))
    if (await retry('the leases of prunes', () => pruneRunning(store, options.app))) {
      logger.info(`a prune of ${options.app} is running: every file is uploaded, none is taken as unchanged`)
      skipNothing = true
    }
  }
  try {
    // Retried as a whole, so nothing inside retries: a store that keeps failing costs `retries + 1`
    // attempts, not their square (the README's bound).
    const state = await retry(`the files of ${options.app}`, () => readStoreState(store, options.app, 0, newest))
    held = state // from now on only names the store holds are worth hashing
    const sync = planSync(await hashing, state, { headers: store.layout === 'flat' })
    if (skipNothing) {
      sync.changed.push(...sync.unchanged)
      sync.unchanged = []
    }
    if (store.exists && sync.unchanged.length > 0) {
      // A key deleted behind our back (eviction, a hand-made cleanup) is written again.
      const present = await store.exists(sync.unchanged.map((file) => state.get(file.relpath)!.key))
      sync.added.push(...sync.unchanged.filter((_, index) => !present[index]))
      sync.unchanged = sync.unchanged.filter((_, index) => present[index])
    }
    return { sync, held: state, lease }
  } catch (error) {
    failed = true
    await lease?.release()
    throw error
  }
}

/** Copies of `files`, with the MD5 of those that `worth` still wants when their turn comes. */
async function hashWhere(files: readonly PlannedUpload[], worth: (file: PlannedUpload) => boolean): Promise<HashedUpload[]> {
  const hashed: HashedUpload[] = files.map((file) => ({ ...file }))
  await forEachLimited(hashed, HASHING, async (file) => {
    if (worth(file)) file.md5 = await md5File(file.path, () => worth(file))
  })
  return hashed
}

async function persist(store: Store, files: readonly PlannedUpload[], timestamp: number, ttlOption: string | undefined): Promise<void> {
  const lost = (await store.persist?.(files.map((file) => file.key))) ?? []
  if (lost.length > 0)
    throw new PushCacheError(
      'UPLOAD_FAILED',
      `${lost.length} keys of build ${timestamp} expired before the build completed (first: ${lost[0]}). Raise \`${ttlOption}\` above the time a push takes.`,
    )
}

/** Best effort: the keys expire on their own (`lockTtl`) if this fails too. Only keys this build wrote go. */
async function abandonVersionedBuild(store: Store, files: readonly PlannedUpload[], lockKey: string, logger: Logger): Promise<void> {
  try {
    await store.delete(files.map((file) => file.key))
    await store.delete([lockKey])
  } catch (error) {
    logger.warn(`could not remove the partial build (its keys expire on their own): ${describeError(error)}`)
  }
}
