import { listBuilds, type StoredBuild } from './builds'
import { withRetry } from './concurrency'
import { describeError, PushCacheError } from './errors'
import { layoutOf } from './layout'
import { type Logger, silentLogger } from './logger'
import { serializeManifest } from './manifest'
import { type PruneRule, planFlatPrune, planVersionedPrune } from './prune'
import type { Store } from './store'

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
}

/**
 * Removes aged-out builds of one app: data first, then the dying manifests, so that a crash in
 * between leaves manifests that protect nothing rather than files that no manifest names. An
 * unreadable manifest stops the prune with a warning.
 */
export async function prune({ store, app, rule, entrypoints, retries = 3, dryRun = false, logger = silentLogger }: PruneInput): Promise<PruneReport> {
  let builds: StoredBuild[]
  try {
    builds = (await listBuilds(store, app, retries)).filter((build) => build.complete)
  } catch (error) {
    if (!(error instanceof PushCacheError) || error.code !== 'MANIFEST_UNREADABLE') throw error
    logger.warn(error.message)
    return { builds: [], keys: [], kept: 0, dryRun, aborted: error.message }
  }
  const layout = layoutOf(store.layout)
  let dying: StoredBuild[]
  let keys: string[]
  let shrinking: { build: StoredBuild; files: string[] }[] = []
  if (store.layout === 'flat') {
    const plan = planFlatPrune(builds, { ...rule, protect: entrypoints })
    dying = plan.dying
    keys = plan.deleteFiles.map((relpath) => layout.dataKey(app, 0, relpath))
  } else {
    const plan = planVersionedPrune(builds, rule)
    dying = plan.dying
    shrinking = plan.shrinking
    keys = plan.deleteVersions.map(({ timestamp, relpath }) => layout.dataKey(app, timestamp, relpath))
  }
  const report: PruneReport = { builds: dying.map((build) => build.timestamp), keys, kept: builds.length - dying.length, dryRun }
  if (dryRun || (dying.length === 0 && keys.length === 0)) return report

  try {
    // Stores batch deletes themselves; a retry of an idempotent delete costs nothing.
    await withRetry(() => store.delete(keys), { retries })
    // Only now: a crash before this leaves a manifest naming deleted older versions, which pop
    // never picks (a newer build names the same relpath), rather than keys no manifest names.
    for (const { build, files } of shrinking) {
      const { manifestKey, manifest } = build
      if (!manifestKey || !manifest) continue // found by scanning: its keys are all there is
      const held = new Set(files)
      const entries = manifest.entries && Object.fromEntries(Object.entries(manifest.entries).filter(([file]) => held.has(file)))
      // Versioned stores keep no headers, so the manifest is written without them.
      await withRetry(() => store.put(manifestKey, Buffer.from(serializeManifest({ ...manifest, files, entries }))), { retries })
    }
    const manifests = dying.flatMap((build) => (build.manifestKey ? [build.manifestKey] : []))
    await withRetry(() => store.delete(manifests), { retries })
  } catch (error) {
    throw new PushCacheError(
      'PRUNE_FAILED',
      `Pruning ${app} in ${store.display} failed: ${describeError(error)}. Run the prune again; it continues where it stopped.`,
      { cause: error },
    )
  }
  logger.info(
    `pruned ${dying.length} builds (${keys.length} files) of ${app}, kept ${report.kept}${shrinking.length ? ` (${shrinking.length} of them only for files no later build rewrote)` : ''}`,
  )
  return report
}
