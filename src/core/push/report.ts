import type { AnnounceReport } from '../announce/announce'
import type { ResolvedCoreOptions } from '../model/options'
import { formatBytes } from '../model/progress'
import type { SyncPlan } from '../model/sync-plan'
import type { PruneReport } from '../prune/prune'
import type { BuildFile, UploadPlan } from './plan'

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
  /**
   * Set when nothing was pushed: the newest build already records the same image, or the build's
   * timestamp already holds a build with the same files.
   */
  skipped?: 'same-image' | 'same-build'
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

/** The report of a push that has planned nothing yet. */
export function emptyReport(options: ResolvedCoreOptions, store: string, manifestKey: string, plan: UploadPlan): PopulateReport {
  return {
    app: options.app,
    store,
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
    phases: {},
  }
}

const sum = (files: readonly BuildFile[]) => files.reduce((total, file) => total + file.size, 0)

/** Counts what the plan writes and skips into `report`. */
export function countPlanned(report: PopulateReport, sync: SyncPlan<BuildFile>): void {
  const toWrite = [...sync.added, ...sync.changed]
  Object.assign(report, {
    uploaded: toWrite.length,
    bytes: sum(toWrite),
    added: sync.added.length,
    changed: sync.changed.length,
    unchanged: sync.unchanged.length,
    unchangedBytes: sum(sync.unchanged),
  })
}

/** Of a superseded build, only the new files were written: the report counts those. */
export function countWrittenOnly(report: PopulateReport, written: readonly BuildFile[]): void {
  Object.assign(report, { uploaded: written.length, bytes: sum(written), added: written.length, changed: 0 })
}

/** The line a successful push ends with. */
export const pushedLine = (report: PopulateReport) =>
  `pushed ${report.uploaded} files (${formatBytes(report.bytes)}: ${report.added} new, ${report.changed} changed) of ${report.app} to ${report.store}, ${report.unchanged} unchanged (${formatBytes(report.unchangedBytes)}) skipped, manifest ${report.manifestKey}`
