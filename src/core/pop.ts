import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { listBuilds, listEntries } from './builds'
import { forEachLimited, withRetry } from './concurrency'
import { describeError, PushCacheError } from './errors'
import { flatLayout, versionedLayout } from './layout'
import { type Logger, silentLogger } from './logger'
import type { Manifest } from './manifest'
import { assertSafeRelpath } from './paths'
import { createProgressCounter, type ProgressEvent } from './progress'
import type { Store } from './store'

interface PopFile {
  relpath: string
  key: string
  /** Bytes, where the listing or the manifest says; progress totals count what is known. */
  size?: number
}

export interface PopReport {
  app: string
  store: string
  dest: string
  files: number
  bytes: number
  /** For versioned stores, the newest build any file came from. */
  timestamp?: number
  durationMs: number
}

export interface PopInput {
  store: Store
  app: string
  dest: string
  entrypoints?: readonly string[]
  concurrency?: number
  retries?: number
  logger?: Logger
  onProgress?: (event: ProgressEvent) => void
}

/**
 * For every relpath, the key the newest complete build that has it names: an older build pushed
 * later never wins. Pure; throws `UNSAFE_PATH` for a relpath that could escape the destination.
 */
export function planVersionedPop(
  app: string,
  builds: readonly { timestamp: number; files: readonly string[]; complete: boolean; manifest?: Pick<Manifest, 'entries'> }[],
): PopFile[] {
  const newest = new Map<string, (typeof builds)[number]>()
  for (const build of builds) {
    if (!build.complete) continue
    for (const relpath of build.files) if ((newest.get(relpath)?.timestamp ?? -1) < build.timestamp) newest.set(relpath, build)
  }
  return [...newest].map(([relpath, { timestamp, manifest }]) => {
    // A build that found a file unchanged names the older build whose key holds it.
    const key = versionedLayout.dataKey(app, manifest?.entries?.[relpath]?.version ?? timestamp, relpath)
    return { relpath: assertSafeRelpath(relpath, key), key, size: manifest?.entries?.[relpath]?.size }
  })
}

async function listPopFiles(store: Store, app: string, retries: number): Promise<{ files: PopFile[]; timestamp?: number }> {
  if (store.layout === 'versioned') {
    const builds = await listBuilds(store, app, retries)
    return { files: planVersionedPop(app, builds), timestamp: builds.find((build) => build.complete)?.timestamp }
  }
  const files: PopFile[] = []
  for (const { key, size } of await listEntries(store, flatLayout.dataPrefix(app), retries)) {
    const parsed = flatLayout.parseDataKey(app, key)
    if (parsed) files.push({ relpath: assertSafeRelpath(parsed.relpath, key), key, size })
  }
  return { files }
}

/**
 * Downloads the app's current files into `dest`. Everything lands in a staging directory beside
 * `dest` first (entrypoints last); only a complete download replaces `dest`, so a failure leaves
 * the previous content as it was.
 */
export async function pop({
  store,
  app,
  dest,
  entrypoints = ['fed-mods.json'],
  concurrency = 16,
  retries = 3,
  logger = silentLogger,
  onProgress,
}: PopInput): Promise<PopReport> {
  const started = Date.now()
  const { files, timestamp } = await listPopFiles(store, app, retries)
  if (files.length === 0)
    throw new PushCacheError('DOWNLOAD_FAILED', `No files of app ${app} in ${store.display}. Check \`--app\` and \`--store\`, or populate first.`)
  const staging = join(dirname(dest), `.${basename(dest)}.staging-${randomBytes(4).toString('hex')}`)
  const progress = createProgressCounter({ files: files.length, bytes: files.reduce((sum, file) => sum + (file.size ?? 0), 0) }, onProgress)
  const download = async (file: PopFile) => {
    const target = join(staging, file.relpath)
    await mkdir(dirname(target), { recursive: true })
    try {
      await withRetry(
        async () => {
          const body = await store.read(file.key)
          if (!body) throw new PushCacheError('DOWNLOAD_FAILED', `${file.key} was listed but no longer exists`)
          await pipeline(body, createWriteStream(target))
        },
        { retries },
      )
    } catch (error) {
      throw new PushCacheError(
        'DOWNLOAD_FAILED',
        `Could not download ${file.key} from ${store.display}: ${describeError(error)}. ${dest} was left as it was.`,
        { cause: error },
      )
    }
    const { size } = await stat(target)
    progress.add(file.relpath, size)
  }
  const last = new Set(entrypoints)
  try {
    await forEachLimited(
      files.filter((file) => !last.has(file.relpath)),
      concurrency,
      download,
    )
    for (const file of files.filter((file) => last.has(file.relpath))) await download(file)
    await swapInto(staging, dest)
  } catch (error) {
    await rm(staging, { recursive: true, force: true })
    throw error
  }
  logger.info(`popped ${files.length} files of ${app} from ${store.display} into ${dest}`)
  return { app, store: store.display, dest, files: files.length, bytes: progress.done.bytes, timestamp, durationMs: Date.now() - started }
}

/** Replaces `dest` by `staging` with two renames; the old content is restored if the second fails. */
async function swapInto(staging: string, dest: string): Promise<void> {
  const previous = `${staging}.previous`
  const hadDest = await stat(dest).then(
    () => true,
    () => false,
  )
  if (hadDest) await rename(dest, previous)
  try {
    await rename(staging, dest)
  } catch (error) {
    if (hadDest) await rename(previous, dest)
    throw error
  }
  if (hadDest) await rm(previous, { recursive: true, force: true })
}
