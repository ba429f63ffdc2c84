import { describeError, PushCacheError } from '../model/errors'
import { entryOf } from '../model/manifest'
import { listBuilds, orphanedKeys, type StoredBuild, versionsOf } from '../store/builds'
import { layoutOf } from '../store/layout'
import { isServed, readPending, servedEntrypoints } from '../store/pending'
import type { Store } from '../store/store'
import { takeWriterLock, type WriterLockTiming } from '../store/writer-lock'
import { withRetry } from '../util/concurrency'
import { type Logger, silentLogger } from '../util/logger'
import { type PruneRule, planFlatPrune, planVersionedPrune } from './rules'

export interface PruneReport {
  /** Timestamps of the builds that were (or, with `dryRun`, would be) removed. */
  builds: number[]
  /** Data keys deleted. */
  keys: string[]
  /** Builds left. */
  kept: number
  dryRun: boolean
  /** Why nothing was pruned, when a manifest could not be read. */
  aborted?: string
}

export interface PruneInput {
  store: Store
  app: string
  rule: Omit<PruneRule, 'protect'>
  entrypoints: readonly string[]
  retries?: number
  dryRun?: boolean
  logger?: Logger
  /** How long the app's writer lock lives unrenewed and how long to wait for it (tests shorten them). */
  writerLock?: WriterLockTiming
}

/**
 * Removes aged-out builds of one app: data first, then the dying manifests, so that a crash in
 * between leaves manifests that protect nothing rather than files that no manifest names. It holds
 * the app's writer lock throughout, so no push of the app runs meanwhile (see `writer-lock.ts`). An
 * unreadable manifest stops the prune before it deletes anything, with the reason in `aborted`:
 * the caller decides whether that fails.
 */
export async function prune({
  store,
  app,
  rule,
  entrypoints,
  retries = 3,
  dryRun = false,
  logger = silentLogger,
  writerLock,
}: PruneInput): Promise<PruneReport> {
  // A dry run writes nothing, not even the lock.
  const lock = dryRun ? undefined : await takeWriterLock({ store, app, what: 'prune', retries, timing: writerLock, logger })
  try {
    let all: StoredBuild[]
    try {
      all = await listBuilds(store, app, retries)
    } catch (error) {
      if (!(error instanceof PushCacheError) || error.code !== 'MANIFEST_UNREADABLE') throw error
      return { builds: [], keys: [], kept: 0, dryRun, aborted: error.message }
    }
    const builds = all.filter((build) => build.complete)
    const layout = layoutOf(store)
    let dying: StoredBuild[]
    let keys: string[]
    let stale: string[] = []
    if (!layout.keysPerBuild) {
      const served = await servedRecords(store, app, builds, entrypoints, retries)
      const plan = planFlatPrune(builds, { ...rule, protect: [...entrypoints, ...served.files] })
      dying = plan.dying.filter((build) => !served.builds.has(build))
      keys = plan.deleteFiles.map((relpath) => layout.dataKey(app, 0, relpath))
      stale = served.stalePending
    } else {
      const records = builds.map((build) => ({ ...build, versions: versionsOf(build), scanned: !build.manifestKey }))
      const plan = planVersionedPrune(records, rule)
      dying = plan.dying
      const orphans = await orphanedKeys(store, app, all, rule.now * 1000, retries)
      if (orphans.length > 0)
        logger.info(`${orphans.length} keys of ${app} were left by a push that died before its manifest, and no build names them (first: ${orphans[0]})`)
      keys = [...plan.deleteVersions.map(({ timestamp, relpath }) => layout.dataKey(app, timestamp, relpath)), ...orphans]
    }
    const report: PruneReport = { builds: dying.map((build) => build.timestamp), keys, kept: builds.length - dying.length, dryRun }
    if (dryRun || (dying.length === 0 && keys.length === 0 && stale.length === 0)) return report

    await lock?.confirm('its deletes')
    try {
      // Stores batch deletes themselves; a retry of an idempotent delete costs nothing.
      await withRetry(() => store.delete(keys), { retries, isTransient: store.isTransient })
      const manifests = dying.flatMap((build) => (build.manifestKey ? [build.manifestKey] : []))
      await withRetry(() => store.delete([...manifests, ...stale]), { retries, isTransient: store.isTransient })
    } catch (error) {
      throw new PushCacheError(
        'PRUNE_FAILED',
        `Pruning ${app} in ${store.display} failed: ${describeError(error)}. Run the prune again; it continues where it stopped.`,
        { cause: error },
      )
    }
    logger.info(`pruned ${dying.length} builds (${keys.length} files) of ${app}, kept ${report.kept}`)
    return report
  } finally {
    await lock?.release()
  }
}

/**
 * Flat stores: the build whose entrypoints are served is never pruned, whatever its age or rank (a
 * push that failed or died between its entrypoints and its manifest, an older build served after a
 * newer one failed). It is the newest record, manifest or pending (`pending.ts`), whose entrypoints
 * have the served MD5s: builds that share an entrypoint's bytes all match, and the newest one wrote
 * it last. Pending records other than that one protect nothing and go.
 */
async function servedRecords(store: Store, app: string, builds: readonly StoredBuild[], entrypoints: readonly string[], retries: number) {
  const served = await servedEntrypoints(store, app, entrypoints, retries)
  const pending = await readPending(store, app, retries)
  const recordedOf = (build: StoredBuild) => Object.fromEntries(entrypoints.map((relpath) => [relpath, entryOf(build.manifest, relpath)?.md5]))
  const candidates = [
    ...builds.filter((build) => isServed(recordedOf(build), served)).map((build) => ({ timestamp: build.timestamp, files: build.files, build })),
    ...pending.filter((record) => isServed(record.entrypoints, served)).map((record) => ({ ...record, build: undefined })),
  ]
  const newest = candidates.sort((a, b) => b.timestamp - a.timestamp)[0]
  return {
    builds: new Set(newest?.build ? [newest.build] : []),
    files: newest?.files ?? [],
    stalePending: pending.filter((record) => record.key !== (newest && 'key' in newest ? newest.key : undefined)).map((record) => record.key),
  }
}
