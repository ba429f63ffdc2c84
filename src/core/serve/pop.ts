import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { copyFile, link, mkdir } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { describeError, PushCacheError } from '../model/errors'
import type { Manifest } from '../model/manifest'
import { assertSafeRelpath } from '../model/paths'
import { createProgressCounter, type ProgressEvent } from '../model/progress'
import { planSync, type WantedFile } from '../model/sync-plan'
import { listBuilds, newestBuild } from '../store/builds'
import { readStoreState, unlessUnreadable } from '../store/held-files'
import { layoutOf, versionedLayout } from '../store/layout'
import type { Store } from '../store/store'
import { abortable, forEachLimited, withRetry } from '../util/concurrency'
import { type Logger, silentLogger } from '../util/logger'
import { type BuildState, createBuildDir, discardBuildDir, publishBuildDir, readServed, type Served, servedFiles, writeState } from './served-dir'

/** A file of the app as the store holds it: where to read it, and its size and MD5 where known. */
export interface PopFile extends WantedFile {
  key: string
}

/** What `pop` would put in the destination now. */
export interface StoreSnapshot {
  files: PopFile[]
  /** The newest build with a manifest (complete, for versioned stores); absent when the store has none. */
  timestamp?: number
}

interface Count {
  files: number
  bytes: number
}

export interface PopReport {
  app: string
  store: string
  dest: string
  /** Files and bytes the destination serves now. */
  files: number
  bytes: number
  /** Fetched from the store. */
  downloaded: Count
  /** Already held by the previous build: hard-linked (or copied) from it, not downloaded. */
  unchanged: Count
  /** The newest build in the store when it was read. */
  timestamp?: number
  /** The build directory `dest` links to (in `.<dest>.builds/`). */
  build: string
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
  /** Stops the downloads; the destination is then left as it was. A swap already under way completes. */
  signal?: AbortSignal
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
    const entry = manifest?.entries?.[relpath]
    const key = versionedLayout.dataKey(app, entry?.version ?? timestamp, relpath)
    // A versioned key is never rewritten, so the MD5 its manifest recorded holds for as long as the key exists.
    return { relpath: assertSafeRelpath(relpath, key), key, size: entry?.size, md5: entry?.md5 }
  })
}

/**
 * What the store holds for `app`, read without downloading any file. Versioned stores: every file
 * of the newest complete build that has it. Flat stores: the newest manifest is read before the data
 * is listed, so the files are at least that new; MD5s as `readStoreState` vouches for them.
 */
export async function readStoreSnapshot(store: Store, app: string, retries = 3): Promise<StoreSnapshot> {
  if (layoutOf(store).keysPerBuild) {
    const builds = await listBuilds(store, app, retries)
    return { files: planVersionedPop(app, builds), timestamp: builds.find((build) => build.complete)?.timestamp }
  }
  // A listing that fails transiently starts over.
  return withRetry(
    async () => {
      // An unreadable newest manifest vouches for nothing: the files are still listed, their MD5s unknown.
      const newest = await newestBuild(store, app, retries).catch(unlessUnreadable)
      const held = await readStoreState(store, app, retries, newest ?? null)
      // Headers are left out: a served copy has none to compare.
      const files = [...held].map(([relpath, { key, size, md5 }]) => ({ relpath: assertSafeRelpath(relpath, key), key, size, md5 }))
      return { files, timestamp: newest?.timestamp }
    },
    { retries, isTransient: store.isTransient },
  )
}

/** Downloads the app's current files into `dest` (see {@link popSnapshot}). */
export async function pop(input: PopInput): Promise<PopReport> {
  const snapshot = await readStoreSnapshot(input.store, input.app, input.retries)
  if (snapshot.files.length === 0)
    throw new PushCacheError('DOWNLOAD_FAILED', `No files of app ${input.app} in ${input.store.display}. Check \`--app\` and \`--store\`, or populate first.`)
  return popSnapshot({ ...input, snapshot })
}

/** Link errors after which a copy still works: another file system, no hard links there, too many links. */
const LINK_UNSUPPORTED = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP'])

/**
 * Brings `dest` to `snapshot`: a new build directory beside it receives the files, those the
 * current build already holds with the same MD5 hard-linked from it and only the others downloaded
 * (entrypoints last), and then `dest` is switched to it in one atomic rename. A failure or an abort
 * before the switch removes the new directory and leaves `dest` as it was. When nothing differs,
 * nothing is written but the state's timestamp.
 */
export async function popSnapshot({
  store,
  app,
  dest: destPath,
  snapshot,
  entrypoints = ['fed-mods.json'],
  concurrency = 16,
  retries = 3,
  logger = silentLogger,
  onProgress,
  signal,
  served: knownServed,
}: PopInput & { snapshot: StoreSnapshot; served?: Served }): Promise<PopReport> {
  const started = Date.now()
  const dest = resolve(destPath)
  const served = knownServed ?? (await readServed(dest))
  const held = await servedFiles(
    served,
    snapshot.files.some((file) => file.md5),
  )
  const heldDir = served.kind === 'build' || served.kind === 'directory' ? served.dir : undefined
  const plan = planSync(snapshot.files, held)
  const wanted = new Set(snapshot.files.map((file) => file.relpath))
  const unchangedBytes = plan.unchanged.reduce((sum, file) => sum + held.get(file.relpath)!.size, 0)
  const report = (build: string, downloaded: Count, bytes: number): PopReport => ({
    app,
    store: store.display,
    dest,
    files: snapshot.files.length,
    bytes,
    downloaded,
    unchanged: { files: plan.unchanged.length, bytes: unchangedBytes },
    timestamp: snapshot.timestamp,
    build,
    durationMs: Date.now() - started,
  })

  if (served.kind === 'build' && served.state && plan.unchanged.length === wanted.size && held.size === wanted.size) {
    if (served.state.timestamp !== snapshot.timestamp) await writeState(dest, served.id, { ...served.state, timestamp: snapshot.timestamp })
    logger.info(`${dest} already holds the ${wanted.size} current files of ${app}`)
    return report(served.id, { files: 0, bytes: 0 }, unchangedBytes)
  }

  const build = await createBuildDir(dest, snapshot.timestamp)
  const state: BuildState = { app, store: store.display, timestamp: snapshot.timestamp, poppedAt: new Date().toISOString(), files: {} }
  const fetching = [...plan.added, ...plan.changed]
  const progress = createProgressCounter({ files: fetching.length, bytes: fetching.reduce((sum, file) => sum + (file.size ?? 0), 0) }, onProgress)

  const download = async (file: PopFile) => {
    signal?.throwIfAborted()
    const target = join(build.dir, file.relpath)
    await mkdir(dirname(target), { recursive: true })
    try {
      state.files[file.relpath] = await withRetry(() => downloadFile(store, file.key, target, signal), { retries, isTransient: store.isTransient })
    } catch (error) {
      if (signal?.aborted) throw signal.reason
      throw new PushCacheError(
        'DOWNLOAD_FAILED',
        `Could not download ${file.key} from ${store.display}: ${describeError(error)}. ${dest} was left as it was.`,
        { cause: error },
      )
    }
    progress.add(file.relpath, state.files[file.relpath]!.size)
  }
  const reuse = async (file: PopFile) => {
    signal?.throwIfAborted()
    const target = join(build.dir, file.relpath)
    const source = join(heldDir!, file.relpath)
    await mkdir(dirname(target), { recursive: true })
    try {
      await link(source, target).catch((error: NodeJS.ErrnoException) => {
        if (!LINK_UNSUPPORTED.has(error.code ?? '')) throw error
        return copyFile(source, target)
      })
    } catch (error) {
      // Gone from the served build since it was recorded (edited by hand): fetch it after all.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return download(file)
      throw error
    }
    state.files[file.relpath] = held.get(file.relpath)!
  }

  const last = new Set(entrypoints)
  const isLast = (file: PopFile) => last.has(file.relpath)
  try {
    await forEachLimited(
      plan.unchanged.filter((file) => !isLast(file)),
      concurrency,
      reuse,
    )
    await forEachLimited(
      fetching.filter((file) => !isLast(file)),
      concurrency,
      download,
    )
    for (const file of plan.unchanged.filter(isLast)) await reuse(file)
    for (const file of fetching.filter(isLast)) await download(file)
  } catch (error) {
    await discardBuildDir(dest, build.dir)
    throw error
  }
  await publishBuildDir(dest, build.id, state, served)
  const bytes = Object.values(state.files).reduce((sum, file) => sum + file.size, 0)
  logger.info(`popped ${wanted.size} files of ${app} from ${store.display} into ${dest}: ${progress.done.files} downloaded, ${plan.unchanged.length} unchanged`)
  return report(build.id, { ...progress.done }, bytes)
}

/** Streams one key into `target`, hashing on the way: the state records what is on disk, not what the store claimed. */
async function downloadFile(store: Store, key: string, target: string, signal?: AbortSignal): Promise<{ size: number; md5: string }> {
  const reading = store.read(key)
  const body = await (signal ? abortable(reading, signal, (late) => late?.destroy()) : reading)
  if (!body) throw new PushCacheError('DOWNLOAD_FAILED', `${key} was listed but no longer exists`)
  const hash = createHash('md5')
  let size = 0
  await pipeline(
    body,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk)
        size += chunk.length
        yield chunk
      }
    },
    createWriteStream(target),
    signal ? { signal } : {},
  )
  return { size, md5: hash.digest('hex') }
}
