import { newestBuild } from './builds'
import { forEachLimited, withRetry } from './concurrency'
import { describeError, PushCacheError } from './errors'
import { layoutOf, versionedLayout } from './layout'
import { type Logger, silentLogger } from './logger'
import { type Manifest, serializeManifest } from './manifest'
import type { ResolvedOptions } from './options'
import { type BuildFile, type PlannedUpload, planUpload } from './plan'
import { createProgressCounter, formatBytes, type ProgressEvent } from './progress'
import { type PruneReport, prune } from './prune-store'
import type { Store } from './store'
import { GENERATOR } from './version'

export interface PopulateReport {
  app: string
  store: string
  timestamp: number
  manifestKey: string
  /** Files written (or, with `dryRun`, that would be). */
  uploaded: number
  bytes: number
  /** Files that `include`/`exclude` left out. */
  excluded: number
  entrypoints: string[]
  /** Set when the run was skipped because the newest build already records the same image. */
  skipped?: 'same-image'
  dryRun: boolean
  durationMs: number
  pruned?: PruneReport
}

export interface PopulateInput {
  store: Store
  options: ResolvedOptions
  files: readonly BuildFile[]
  logger?: Logger
  onProgress?: (event: ProgressEvent) => void
  now?: () => number
}

/**
 * Pushes one build: every asset, then the entrypoints once all of them landed, then the manifest,
 * then (optionally) prunes. A failure at any step leaves no entrypoint and no manifest of this build.
 */
export async function populate({ store, options, files, logger = silentLogger, onProgress, now = Date.now }: PopulateInput): Promise<PopulateReport> {
  const started = now()
  const layout = layoutOf(store.layout)
  const plan = planUpload(files, options, layout)
  const all = [...plan.assets, ...plan.entrypoints]
  const manifestKey = layout.manifestKey(options.app, options.timestamp)
  const report: PopulateReport = {
    app: options.app,
    store: store.display,
    timestamp: options.timestamp,
    manifestKey,
    uploaded: all.length,
    bytes: all.reduce((sum, file) => sum + file.size, 0),
    excluded: plan.excluded.length,
    entrypoints: plan.entrypoints.map((file) => file.relpath),
    dryRun: options.dryRun,
    durationMs: 0,
  }
  if (all.length === 0)
    throw new PushCacheError(
      'NO_FILES',
      `No files to push for app ${options.app}: ${files.length} found, all left out by include/exclude. Check the output directory and the \`include\`/\`exclude\` options.`,
    )

  if (options.image) {
    const newest = await newestBuild(store, options.app, options.retries)
    if (newest?.manifest?.image === options.image) {
      logger.info(`Build ${newest.timestamp} already records image ${options.image}; nothing to push.`)
      return { ...report, uploaded: 0, bytes: 0, skipped: 'same-image', durationMs: now() - started }
    }
  }

  if (options.dryRun) {
    for (const file of all) logger.info(`would push ${file.key} (${file.size} B, ${file.contentType}, ${file.cacheControl})`)
    return { ...report, durationMs: now() - started }
  }

  const versioned = store.layout === 'versioned'
  const expiresIn = versioned ? (options.valkey.lockTtl ?? 3600) : undefined
  const lockKey = versionedLayout.lockKey(options.app, options.timestamp)
  const progress = createProgressCounter({ files: all.length, bytes: report.bytes }, onProgress)
  // A crashed build's keys must expire before its lock, or readers would take them for a build:
  // the lock lives twice `lockTtl`, and data keys are written only during the first `lockTtl`.
  const lockedAt = now()
  const retry = (what: string, attempt: () => Promise<void>) =>
    withRetry(attempt, {
      retries: options.retries,
      onRetry: (error, count) => logger.warn(`retrying ${what} (${count}/${options.retries}): ${describeError(error)}`),
    })
  const put = async (file: PlannedUpload) => {
    if (expiresIn && now() - lockedAt > expiresIn * 1000)
      throw new PushCacheError(
        'UPLOAD_FAILED',
        `Build ${options.timestamp} took longer than \`valkey.lockTtl\` (${expiresIn} s) to write; it was abandoned. Raise \`valkey.lockTtl\` above the time a push takes.`,
      )
    try {
      await retry(file.relpath, () =>
        store.put(file.key, { file: file.path, size: file.size }, { contentType: file.contentType, cacheControl: file.cacheControl, expiresIn }),
      )
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

  try {
    if (versioned) await retry(lockKey, () => store.put(lockKey, Buffer.from('in-progress'), { expiresIn: 2 * expiresIn! }))
    await forEachLimited(plan.assets, options.concurrency, put)
    if (versioned) await persist(store, plan.assets, options.timestamp)
    // Entrypoints name the assets: they are published only now that every asset is in place.
    for (const file of plan.entrypoints) await put(file)
    if (versioned) await persist(store, plan.entrypoints, options.timestamp)
    const manifest: Manifest = {
      // What this build put in the store: readers pop and prune by it, so files left out by
      // include/exclude are not in it.
      files: all.map((file) => file.relpath).sort(),
      timestamp: options.timestamp,
      ...(options.image ? { image: options.image } : {}),
      entrypoints: report.entrypoints,
      generator: GENERATOR,
      entries: Object.fromEntries(all.map((file) => [file.relpath, { size: file.size, contentType: file.contentType, cacheControl: file.cacheControl }])),
    }
    await retry(manifestKey, () =>
      store.put(manifestKey, Buffer.from(serializeManifest(manifest)), { contentType: 'application/json; charset=utf-8', cacheControl: 'no-cache' }),
    )
    if (versioned) await retry(lockKey, () => store.delete([lockKey]))
  } catch (error) {
    if (versioned) await abandonVersionedBuild(store, all, lockKey, logger)
    throw error
  }
  logger.info(`pushed ${all.length} files (${formatBytes(report.bytes)}) of ${options.app} to ${store.display}, manifest ${manifestKey}`)

  if (options.prune)
    report.pruned = await prune({
      store,
      app: options.app,
      rule: { ...options.prune, now: Math.floor(now() / 1000) },
      entrypoints: options.entrypoint,
      retries: options.retries,
      logger,
    })
  return { ...report, durationMs: now() - started }
}

async function persist(store: Store, files: readonly PlannedUpload[], timestamp: number): Promise<void> {
  const lost = (await store.persist?.(files.map((file) => file.key))) ?? []
  if (lost.length > 0)
    throw new PushCacheError(
      'UPLOAD_FAILED',
      `${lost.length} keys of build ${timestamp} expired before the build completed (first: ${lost[0]}). Raise \`valkey.lockTtl\` above the time a push takes.`,
    )
}

/** Best effort: the keys expire on their own (`lockTtl`) if this fails too. */
async function abandonVersionedBuild(store: Store, files: readonly PlannedUpload[], lockKey: string, logger: Logger): Promise<void> {
  try {
    await store.delete(files.map((file) => file.key))
    await store.delete([lockKey])
  } catch (error) {
    logger.warn(`could not remove the partial build (its keys expire on their own): ${describeError(error)}`)
  }
}
