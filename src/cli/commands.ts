import { resolve } from 'node:path'
import { listBuilds, type StoredBuild } from '../core/builds'
import { formatAge } from '../core/duration'
import { PushCacheError } from '../core/errors'
import { collectFiles } from '../core/files'
import type { Logger } from '../core/logger'
import type { ResolvedOptions } from '../core/options'
import { pop } from '../core/pop'
import { populate } from '../core/populate'
import { formatBytes } from '../core/progress'
import { prune } from '../core/prune-store'
import type { Store } from '../core/store'
import { createProgress, type Progress } from './progress'
import { openStore } from './store'

export interface Context {
  options: ResolvedOptions
  logger: Logger
  /** A person watches a terminal: draw a progress bar. */
  interactive: boolean
  /** Text for stdout when not in `--json` mode. */
  print(line: string): void
}

/** Each command returns the report that `--json` prints. */
type Report = object

async function withStore<T>(options: ResolvedOptions, logger: Logger, work: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(options, logger)
  try {
    return await work(store)
  } finally {
    await store.close()
  }
}

/** A bar or plain progress lines for the work, stopped however it ends. */
async function withProgress<T>({ logger, interactive }: Context, work: (onProgress: Progress['onProgress']) => Promise<T>): Promise<T> {
  const progress = createProgress(logger, interactive)
  try {
    return await work(progress.onProgress)
  } finally {
    progress.stop()
  }
}

export async function populateCommand(dir: string, context: Context): Promise<Report> {
  const { options, logger } = context
  // Read the directory before touching the store: a wrong path must leave the store untouched.
  const files = await collectFiles(resolve(dir), undefined, logger)
  if (files.length === 0)
    throw new PushCacheError('NO_FILES', `The directory ${dir} holds no files: nothing to push. Build first, or point to the directory the build writes.`)
  return withProgress(context, (onProgress) => withStore(options, logger, (store) => populate({ store, options, files, logger, onProgress })))
}

export async function popCommand(dest: string, context: Context): Promise<Report> {
  const { options, logger } = context
  return withProgress(context, (onProgress) =>
    withStore(options, logger, (store) =>
      pop({
        store,
        app: options.app,
        dest: resolve(dest),
        entrypoints: options.entrypoint,
        concurrency: options.concurrency,
        retries: options.retries,
        logger,
        onProgress,
      }),
    ),
  )
}

export async function pruneCommand({ options, logger }: Context): Promise<Report> {
  if (!options.prune)
    throw new PushCacheError('INVALID_OPTION', 'Option `--older-than` is missing. Say how old a build must be to go, e.g. `--older-than 48h`.')
  const rule = { ...options.prune, now: Math.floor(Date.now() / 1000) }
  const report = await withStore(options, logger, (store) =>
    prune({ store, app: options.app, rule, entrypoints: options.entrypoint, retries: options.retries, dryRun: options.dryRun, logger }),
  )
  if (report.dryRun || report.builds.length === 0)
    logger.info(
      `${report.dryRun ? 'would prune' : 'pruned'} ${report.builds.length} builds (${report.keys.length} files) of ${options.app}, kept ${report.kept}`,
    )
  return report
}

/** Sum of the sizes the manifest records; undefined for manifests written without them (valpop). */
function bytesOf(build: StoredBuild): number | undefined {
  const entries = Object.values(build.manifest?.entries ?? {})
  return entries.length > 0 ? entries.reduce((sum, entry) => sum + (entry.size ?? 0), 0) : undefined
}

export async function lsCommand({ options, logger, print }: Context): Promise<Report> {
  const now = Math.floor(Date.now() / 1000)
  const { display, stored } = await withStore(options, logger, async (store) => ({
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
