import { createHash } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { copyFileSync, linkSync, mkdirSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { describeError, PushCacheError } from '../model/errors'
import { entryAt, entryOf, type Manifest, type ManifestEntry } from '../model/manifest'
import { assertSafeRelpath } from '../model/paths'
import { createProgressCounter, type ProgressEvent } from '../model/progress'
import { planSync, type SyncPlan, type WantedFile } from '../model/sync-plan'
import { listBuilds, newestBuildListed, newestManifestTimestamp, type StoredBuild, visitEntriesSplit } from '../store/builds'
import { flatLayout, layoutOf, versionedLayout } from '../store/layout'
import type { Store, StoreEntry } from '../store/store'
import { pause } from '../util/backoff'
import { type AdaptiveLimit, abortable, createAdaptiveLimit, forEachLimited, levelForRoundTrip, withRetry } from '../util/concurrency'
import { isMd5 } from '../util/digest'
import { type Logger, silentLogger } from '../util/logger'
import { type BuildState, createBuildDir, discardBuildDir, lockDest, publishBuildDir, readServed, type Served, servedFiles, writeState } from './served-dir'
import { type ServerConfigReport, writeServerConfigs } from './server-config'

/**
 * A file of the app as the store holds it: where to read it, and the size and MD5 its bytes must
 * have (from the manifest that names it, else a plain-MD5 ETag or the listed size), where known.
 */
export interface PopFile extends WantedFile {
  key: string
  /** The headers its manifest entry records, for the web server configs (not compared: a served file has no headers of its own). */
  headers?: Pick<ManifestEntry, 'contentType' | 'cacheControl'>
}

/** What `pop` would put in the destination now. */
export interface StoreSnapshot {
  files: PopFile[]
  /** The newest build with a manifest (complete, for versioned stores); absent when the store has none. */
  timestamp?: number
  /** Flat stores: the newest manifest key listed, readable or not; a newer one listed once the last download started means the store moved on. */
  newestListed?: number
}

/** How many times a pop starts over against a store that changed under it, and the pause before each new start. */
const PASSES = 3
const PASS_PAUSE_MS = 500
/** How long a pop or watch waits for another writer of the same `dest`. */
const LOCK_WAIT_MS = 10 * 60 * 1000
/**
 * Downloads in flight to start with, unless the caller fixes it (a store's own `concurrency` is
 * about uploads). A build's files are small: on a long link each wave costs a round trip, and the
 * ~100 files of a 5%-changed build take two waves at 64 where they took seven at 16. Each holds
 * at most `WRITE_BATCH_BYTES`.
 */
const DEFAULT_DOWNLOADS = 64
/** The most downloads a pop may have in flight, probing included: what sizes the abort listeners. */
const MAX_DOWNLOADS = 256
/** Bytes of a download held before they are written: most files of a build fit, and reach the disk in one write. */
const WRITE_BATCH_BYTES = 512 * 1024

/** The store no longer holds the build being popped (a push rewrote a file, or a newer build landed): start over. */
class StoreChanged extends PushCacheError {
  constructor(message: string) {
    super('DOWNLOAD_FAILED', message)
  }
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
  /** The nginx and Caddy configs written beside the builds: `reloadNeeded` when a server must reload to serve the headers right. */
  headerRules: ServerConfigReport
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

const headersOf = (entry: ManifestEntry | undefined): PopFile['headers'] => entry && { contentType: entry.contentType, cacheControl: entry.cacheControl }

/**
 * For every relpath, the key the newest complete build that has it names: an older build pushed
 * later never wins. Pure; throws `UNSAFE_PATH` for a relpath that could escape the destination.
 */
export function planVersionedPop(
  app: string,
  builds: readonly { timestamp: number; files: readonly string[]; complete: boolean; manifest?: Pick<Manifest, 'files' | 'details'> }[],
): PopFile[] {
  const newest = new Map<string, (typeof builds)[number]>()
  for (const build of builds) {
    if (!build.complete) continue
    for (const relpath of build.files) if ((newest.get(relpath)?.timestamp ?? -1) < build.timestamp) newest.set(relpath, build)
  }
  return [...newest].map(([relpath, { timestamp, manifest }]) => {
    // A build that found a file unchanged names the older build whose key holds it.
    const entry = entryOf(manifest, relpath)
    const key = versionedLayout.dataKey(app, entry?.version ?? timestamp, relpath)
    // A versioned key is never rewritten, so the MD5 its manifest recorded holds for as long as the key exists.
    return { relpath: assertSafeRelpath(relpath, key), key, size: entry?.size, md5: entry?.md5, headers: headersOf(entry) }
  })
}

/**
 * A file only older builds name may be gone: a prune deletes a dying build's keys before its
 * manifest, and one stopped in between leaves that manifest naming keys it already deleted. Such a
 * file is left out, as a flat store's listing leaves out a deleted one; the newest build's are kept.
 */
async function withoutPrunedOlder(store: Store, files: PopFile[], newest: readonly string[], retries: number): Promise<PopFile[]> {
  const inNewest = new Set(newest)
  const older = files.filter((file) => !inNewest.has(file.relpath))
  if (!store.exists || older.length === 0) return files
  const present = await withRetry(() => store.exists!(older.map((file) => file.key)), { retries, isTransient: store.isTransient })
  const gone = new Set(older.filter((_, index) => !present[index]).map((file) => file.key))
  return files.filter((file) => !gone.has(file.key))
}

/**
 * A {@link StoreSnapshot} as it is read. `pinned`: once the newest manifest is read, the files it
 * pins to an MD5 (flat stores), with its timestamp: what the data listing says changes nothing of
 * what they must be, so their downloads start before it ends. `whole`: every file, once the listing
 * ended (the pinned ones among them, the same objects). On versioned stores both are the whole.
 */
export interface SnapshotReading {
  pinned: Promise<StoreSnapshot>
  whole: Promise<StoreSnapshot>
}

/**
 * What the store holds for `app`, read without downloading any file. Versioned stores: every file
 * of the newest complete build that has it. Flat stores: the files of the newest manifest, pinned
 * to the MD5s and sizes it records, plus the other files the data prefix lists (older builds' that
 * are not pruned yet), checked against their plain-MD5 ETag or their size.
 */
export function readStore(store: Store, app: string, retries = 3, served: readonly string[] = []): SnapshotReading {
  if (layoutOf(store).keysPerBuild) {
    const whole = readVersioned(store, app, retries)
    whole.catch(() => {}) // awaited by whoever reads it
    return { pinned: whole, whole }
  }
  // The data listing is cut in ranges at the files dest serves, most of which the store still
  // holds: its pages come in one round trip, beside the manifest's read, not one after another.
  const listing: StoreEntry[] = []
  // The manifest first: the first downloads wait for it, a server that answers one request at a
  // time (moto) answers in the order sent, and a store's first request may go alone (S3's check
  // for a region redirect), so the manifest's read follows it while the data is listed.
  const manifest = newestBuildListed(store, app, retries)
  const listed = visitEntriesSplit(store, flatLayout.dataPrefix(app), served, retries, (entry) => listing.push(entry))
  const pinned = manifest.then(({ newest, newestListed }) => ({ files: pinnedFiles(app, newest), timestamp: newest?.timestamp, newestListed }))
  const whole = Promise.all([pinned, manifest, listed]).then(([early, { newest }]) => withListed(app, early, newest, listing))
  // Awaited by whoever reads them; a pop that failed first never does.
  for (const reading of [pinned, whole]) reading.catch(() => {})
  return { pinned, whole }
}

async function readVersioned(store: Store, app: string, retries: number): Promise<StoreSnapshot> {
  const builds = await listBuilds(store, app, retries)
  const newest = builds.find((build) => build.complete)
  return { files: await withoutPrunedOlder(store, planVersionedPop(app, builds), newest?.files ?? [], retries), timestamp: newest?.timestamp }
}

/** The files of the newest manifest that it records an MD5 of, with that MD5 and size (an unreadable manifest vouches for nothing). */
function pinnedFiles(app: string, newest: StoredBuild | undefined): PopFile[] {
  const details = newest?.manifest?.details
  if (!newest || !details) return []
  const files: PopFile[] = []
  const seen = new Set<string>()
  newest.files.forEach((relpath, index) => {
    const recorded = entryAt(details, index)
    if (!recorded.md5 || seen.has(relpath)) return
    seen.add(relpath)
    const key = flatLayout.dataKey(app, 0, relpath)
    files.push({ relpath: assertSafeRelpath(relpath, key), key, md5: recorded.md5.toLowerCase(), size: recorded.size, headers: headersOf(recorded) })
  })
  return files
}

/**
 * `pinned` with the rest of the manifest's files, checked by their listed plain-MD5 ETag or the
 * size recorded (else listed), and the other listed files (older builds'), checked the same way.
 */
function withListed(app: string, pinned: StoreSnapshot, newest: StoredBuild | undefined, listing: readonly StoreEntry[]): StoreSnapshot {
  // A range listed again (a transient failure) lists its keys twice, the newest last.
  const listed = new Map(listing.map((entry) => [entry.key, entry]))
  const files = new Map(pinned.files.map((file) => [file.relpath, file]))
  const details = newest?.manifest?.details
  newest?.files.forEach((relpath, index) => {
    if (files.has(relpath)) return
    const key = flatLayout.dataKey(app, 0, relpath)
    const recorded = details && entryAt(details, index)
    const { etag, size } = listed.get(key) ?? {}
    files.set(relpath, {
      relpath: assertSafeRelpath(relpath, key),
      key,
      md5: isMd5(etag) ? etag.toLowerCase() : undefined,
      size: recorded?.size ?? size,
      headers: headersOf(recorded),
    })
  })
  for (const { key, size, etag } of listed.values()) {
    const relpath = flatLayout.parseDataKey(app, key)?.relpath
    if (relpath === undefined || files.has(relpath)) continue
    files.set(relpath, { relpath: assertSafeRelpath(relpath, key), key, size, md5: isMd5(etag) ? etag.toLowerCase() : undefined })
  }
  return { ...pinned, files: [...files.values()] }
}

/**
 * Downloads the app's current files into `dest` (see {@link popSnapshot}), from `reading` if the
 * caller started it already. A store that changed under the pop (a file no longer the bytes its
 * build recorded, a newer build landed before the last download started) is read again and the pop
 * starts over, at most `PASSES` times in all.
 */
export async function pop(input: PopInput & { reading?: SnapshotReading }): Promise<PopReport> {
  let given = input.reading
  for (let pass = 1; ; pass++) {
    // Read while the lock is taken and dest read: local work that need not wait for the store.
    const reading = given ? Promise.resolve(given) : servedRelpaths(input.dest).then((served) => readStore(input.store, input.app, input.retries, served))
    reading.catch(() => {}) // awaited in fillAndSwitch, unless taking the lock failed first
    try {
      return await popSnapshot({ ...input, reading, lastPass: pass === PASSES })
    } catch (error) {
      if (!(error instanceof StoreChanged) || pass === PASSES) throw error
      input.logger?.warn(`${error.message}; reading ${input.store.display} again (attempt ${pass + 1} of ${PASSES})`)
      given = undefined
      await pause(PASS_PAUSE_MS * pass, ...(input.signal ? [input.signal] : []))
      input.signal?.throwIfAborted()
    }
  }
}

/** The files `dest` serves, as its state file records them (read again under the lock): where to cut the store's listing. */
async function servedRelpaths(dest: string): Promise<string[]> {
  const served = await readServed(resolve(dest)).catch(() => undefined)
  return served?.kind === 'build' ? Object.keys(served.state?.files ?? {}) : []
}

/**
 * Brings `dest` to `snapshot`, as its only writer (the lock waits for another `pop` or `watch`): a
 * new build directory beside it receives the files, those the current build already holds with the
 * same MD5 hard-linked from it and only the others downloaded (entrypoints last), each checked
 * against the size and MD5 the snapshot expects; then `dest` is switched to it in one atomic
 * rename. A failure or an abort before the switch removes the new directory and leaves `dest` as it
 * was. When nothing differs, nothing is written but the state's timestamp.
 */
async function popSnapshot(input: PopInput & { reading: Promise<SnapshotReading>; lastPass: boolean }): Promise<PopReport> {
  const dest = resolve(input.dest)
  // Every download adds an abort listener for as long as it runs: a signal of our own, sized to them, keeps Node from warning.
  const local = new AbortController()
  setMaxListeners(2 * Math.max(input.concurrency ?? 0, MAX_DOWNLOADS) + 8, local.signal)
  const forward = () => local.abort(input.signal?.reason)
  if (input.signal?.aborted) forward()
  input.signal?.addEventListener('abort', forward, { once: true })
  const lock = await lockDest(dest, LOCK_WAIT_MS, {
    signal: local.signal,
    onWait: (holder) => input.logger?.info(`waiting for another writer of ${dest} (${holder}) to finish`),
  })
  try {
    return await fillAndSwitch({ ...input, dest, signal: local.signal, stop: (error) => local.abort(error) })
  } finally {
    input.signal?.removeEventListener('abort', forward)
    await lock.release()
  }
}

/** What a pop fetches and links: the plan of the files known first, and that of the others once the data listing ended. */
interface StagedPlan {
  timestamp?: number
  held: Map<string, { size: number; md5: string }>
  first: SyncPlan<PopFile>
  rest: Promise<SyncPlan<PopFile>>
}

/**
 * Plans the files the newest manifest pins against what `dest` serves as soon as that manifest is
 * read (every file, once listed, when it pins none), and the other files once the listing ended.
 */
async function planStaged(reading: SnapshotReading, served: Served, app: string, display: string): Promise<StagedPlan> {
  const pinned = await reading.pinned
  const known = pinned.files.length > 0 ? pinned : await reading.whole
  if (known.files.length === 0)
    throw new PushCacheError('DOWNLOAD_FAILED', `No files of app ${app} in ${display}. Check \`--app\` and \`--store\`, or populate first.`)
  const held = await servedFiles(
    served,
    known.files.some((file) => file.md5),
  )
  const early = new Set(known.files)
  const rest = reading.whole.then((whole) =>
    planSync(
      whole.files.filter((file) => !early.has(file)),
      held,
    ),
  )
  rest.catch(() => {}) // awaited by the downloads, unless a failure came first
  return { timestamp: known.timestamp, held, first: planSync(known.files, held), rest }
}

const joinPlans = <T>(a: SyncPlan<T>, b: SyncPlan<T>): SyncPlan<T> => ({
  unchanged: [...a.unchanged, ...b.unchanged],
  added: [...a.added, ...b.added],
  changed: [...a.changed, ...b.changed],
})

/** Why this is one function of ~70 lines: the report, the downloads and the switch share the plan and the state being built. */
async function fillAndSwitch(
  input: PopInput & { reading: Promise<SnapshotReading>; lastPass: boolean; signal: AbortSignal; stop: (error: unknown) => void },
): Promise<PopReport> {
  const { store, app, dest, entrypoints = ['fed-mods.json'], logger = silentLogger } = input
  const served = await readServed(dest)
  const reading = await input.reading
  const staged = await planStaged(reading, served, app, store.display)
  const { held } = staged
  const started = Date.now()
  const finish = async (build: string, downloaded: Count, write: (snapshot: StoreSnapshot, unchanged: Count) => Promise<number>): Promise<PopReport> => {
    const snapshot = await reading.whole
    const plan = joinPlans(staged.first, await staged.rest)
    const headerRules = await writeServerConfigs(
      dest,
      app,
      snapshot.files.map((file) => ({ relpath: file.relpath, ...file.headers })),
      entrypoints,
      logger,
    )
    const unchanged = { files: plan.unchanged.length, bytes: plan.unchanged.reduce((sum, file) => sum + held.get(file.relpath)!.size, 0) }
    const bytes = await write(snapshot, unchanged)
    const { timestamp } = snapshot
    return {
      app,
      store: store.display,
      dest,
      files: snapshot.files.length,
      bytes,
      downloaded,
      unchanged,
      timestamp,
      build,
      durationMs: Date.now() - started,
      headerRules,
    }
  }

  // Nothing the newest manifest pins differs from what dest serves: the listing tells whether anything does.
  if (served.kind === 'build' && served.state && staged.first.added.length + staged.first.changed.length === 0) {
    const { state } = served
    const [snapshot, rest] = await Promise.all([reading.whole, staged.rest])
    if (rest.added.length + rest.changed.length === 0 && held.size === snapshot.files.length)
      return finish(served.id, { files: 0, bytes: 0 }, async (_, unchanged) => {
        if (state.timestamp !== snapshot.timestamp) await writeState(dest, served.id, { ...state, timestamp: snapshot.timestamp })
        logger.info(`${dest} already holds the ${snapshot.files.length} current files of ${app}`)
        return unchanged.bytes
      })
  }

  const build = await createBuildDir(dest, staged.timestamp)
  const state: BuildState = { app, store: store.display, timestamp: staged.timestamp, poppedAt: new Date().toISOString(), files: {} }
  // Asked once the downloads known so far have started, so that its round trip overlaps theirs
  // (and the listing's); not awaited when they fail (it ends within the store's deadlines).
  const stillNewest: Promise<void>[] = []
  const checkNewest = () => {
    const check = checkStillNewest(store, app, reading.whole, input.lastPass, input.retries ?? 3)
    check.catch(() => {})
    stillNewest.push(check)
  }
  try {
    const heldDir = served.kind === 'build' || served.kind === 'directory' ? served.dir : undefined
    const done = await fillBuildDir({ ...input, downloadsStarted: checkNewest }, staged, { build, state, heldDir })
    await Promise.all(stillNewest)
    return await finish(build.id, done, async (snapshot, unchanged) => {
      await publishBuildDir(dest, build.id, state, served)
      logger.info(`popped ${snapshot.files.length} files of ${app} from ${store.display} into ${dest}: ${done.files} downloaded, ${unchanged.files} unchanged`)
      return Object.values(state.files).reduce((sum, file) => sum + file.size, 0)
    })
  } catch (error) {
    await discardBuildDir(dest, build.dir)
    throw error
  }
}

/**
 * Fills the new build directory: files the served build holds with the same MD5 hard-linked from
 * it while the others are downloaded and checked, those the newest manifest pins as soon as it is
 * read, the others once the listing ended, entrypoints of unknown MD5 queued last.
 * `downloadsStarted` runs once the pinned downloads have started (at once when there is none), and
 * again once those the listing added have, if it added any. Resolves to what was downloaded.
 */
async function fillBuildDir(
  input: PopInput & { signal: AbortSignal; stop: (error: unknown) => void; downloadsStarted: () => void },
  staged: StagedPlan,
  target: { build: { dir: string }; state: BuildState; heldDir?: string },
): Promise<Count> {
  const { entrypoints = ['fed-mods.json'], onProgress, signal } = input
  const { build, state, heldDir } = target
  const last = new Set(entrypoints)
  const total = { files: 0, bytes: 0 }
  const progress = createProgressCounter(total, onProgress)
  const inFlight = downloadsInFlight(input)
  const dirs = new Set<string>()

  const download = async (file: PopFile) => {
    state.files[file.relpath] = await downloadInto(build.dir, file, input)
    if (typeof inFlight !== 'number') inFlight.completed()
    progress.add(file.relpath, state.files[file.relpath]!.size)
  }
  // An entrypoint whose MD5 is known is its build's whenever it is read, and the switch serves every
  // file at once: it goes with the others, not after the listing (a round trip later).
  const goesLast = (file: PopFile) => last.has(file.relpath) && !file.md5
  /** The downloads of `files`, largest first (a big file that started last would finish alone, long after the small ones), entrypoints apart. */
  const queue = (files: PopFile[]) => {
    for (const file of files) {
      total.files++
      total.bytes += file.size ?? 0
    }
    const now = files.filter((file) => !goesLast(file)).sort((a, b) => (b.size ?? 0) - (a.size ?? 0))
    return { now, last: files.filter(goesLast) }
  }
  /** The downloads of `plan`, once the directories of its files are made. */
  const prepare = (plan: SyncPlan<PopFile>) => {
    // A failure elsewhere stopped the pop: its build directory is being removed.
    signal.throwIfAborted()
    const fetching = [...plan.added, ...plan.changed]
    for (const file of [...plan.unchanged, ...fetching]) makeParent(join(build.dir, file.relpath), dirs)
    return queue(fetching)
  }
  /** Links the unchanged files of `plan`; returns those gone from the served build since it was recorded (edited by hand), to download after all. */
  const linkUnchanged = (plan: SyncPlan<PopFile>) => {
    signal.throwIfAborted()
    return plan.unchanged.filter((file) => {
      const linked = linkHeld(join(heldDir!, file.relpath), join(build.dir, file.relpath))
      if (linked) state.files[file.relpath] = staged.held.get(file.relpath)!
      return !linked
    })
  }

  const first = prepare(staged.first)
  const starts = startsTold(first.now.length, input.downloadsStarted)
  const later = (async () => {
    // Linked once the first downloads are on their way, while they wait on the network.
    await new Promise(setImmediate)
    const firstGone = linkUnchanged(staged.first)
    const plan = await staged.rest
    const rest = prepare(plan)
    const gone = queue([...firstGone, ...linkUnchanged(plan)])
    const items = [...rest.now, ...gone.now, ...first.last, ...rest.last, ...gone.last]
    starts.allQueued(first.now.length + items.length)
    return items
  })()
  const startDownload = (file: PopFile) => {
    starts.started()
    return download(file)
  }
  await forEachLimited(first.now, inFlight, startDownload, undefined, later).catch((error) => {
    input.stop(error)
    throw error
  })
  return { ...progress.done }
}

/**
 * Counts the downloads started, and tells `downloadsStarted` once the first `firstCount` have, then
 * once all have (when the listing has told how many), once per count: at once when there is none.
 */
function startsTold(firstCount: number, downloadsStarted: () => void): { started(): void; allQueued(count: number): void } {
  let started = 0
  let queued = Number.POSITIVE_INFINITY
  let told = -1
  const tell = () => {
    if (told === started || (started !== firstCount && started !== queued)) return
    told = started
    downloadsStarted()
  }
  tell()
  return {
    started() {
      started++
      tell()
    },
    allQueued(count) {
      queued = count
      tell()
    },
  }
}

/** Downloads `file` into the build directory `dir`, checked; a failure names the key and says `dest` was left as it was. */
async function downloadInto(
  dir: string,
  file: PopFile,
  { store, dest, retries = 3, signal }: PopInput & { signal: AbortSignal },
): Promise<{ size: number; md5: string }> {
  signal.throwIfAborted()
  try {
    return await downloadChecked(store, file, join(dir, file.relpath), retries, signal)
  } catch (error) {
    if (signal.aborted) throw signal.reason
    if (error instanceof StoreChanged) throw error
    throw new PushCacheError('DOWNLOAD_FAILED', `Could not download ${file.key} from ${store.display}: ${describeError(error)}. ${dest} was left as it was.`, {
      cause: error,
    })
  }
}

/** Makes the directory `path` is in, once: a build's files share a few, and a recursive mkdir per file costs more than its write. */
function makeParent(path: string, made: Set<string>): void {
  const dir = dirname(path)
  if (made.has(dir)) return
  mkdirSync(dir, { recursive: true })
  made.add(dir)
}

/** Link errors after which a copy still works: another file system, no hard links there, too many links. */
const LINK_UNSUPPORTED = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP'])

/**
 * Hard-links (or copies) a file of the served build into the new one; false when it is gone from
 * there. Synchronous: 2,000 links cost 19 to 30 ms of CPU, where 16 at once through the thread pool
 * cost 40 to 61 ms (medians of 7, load 11 to 12), and they run while the downloads wait on the network.
 */
function linkHeld(source: string, path: string): boolean {
  try {
    try {
      linkSync(source, path)
    } catch (error) {
      if (!LINK_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) throw error
      copyFileSync(source, path)
    }
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

/**
 * `concurrency` when given; else the default, widened by the round trip the store has seen when the
 * first download starts, and raised while it pays on a long link.
 */
function downloadsInFlight({ store, concurrency }: PopInput): AdaptiveLimit | number {
  if (concurrency !== undefined) return concurrency
  const max = Math.min(MAX_DOWNLOADS, Math.max(DEFAULT_DOWNLOADS, store.maxConcurrency ?? 0))
  return createAdaptiveLimit({ initial: () => levelForRoundTrip(DEFAULT_DOWNLOADS, max, store.roundTripMs?.()), max })
}

/**
 * On a flat store a push rewrites keys in place: a build whose manifest landed after the snapshot
 * may have replaced files whose expected bytes were unknown (no MD5 recorded). Such a snapshot is
 * read again; one whose every file was checked against an MD5 is a complete build all the same,
 * and on the last pass it is served rather than nothing.
 */
async function checkStillNewest(store: Store, app: string, whole: Promise<StoreSnapshot>, lastPass: boolean, retries: number): Promise<void> {
  if (layoutOf(store).keysPerBuild) return
  // Asked before the listing ends, if it has not: the answer is only compared once it did.
  const newest = await newestManifestTimestamp(store, app, retries)
  const snapshot = await whole
  if (newest === snapshot.newestListed) return
  if (lastPass && snapshot.files.every((file) => file.md5)) return
  throw new StoreChanged(`build ${newest} of ${app} landed in ${store.display} while build ${snapshot.newestListed ?? '(no manifest)'} was being popped`)
}

/** One file, with transient failures retried; bytes that are not the ones expected are read once more, then refused naming the key. */
async function downloadChecked(store: Store, file: PopFile, target: string, retries: number, signal: AbortSignal): Promise<{ size: number; md5: string }> {
  for (let read = 1; ; read++) {
    const got = await withRetry(() => downloadFile(store, file.key, target, file.size, signal), { retries, isTransient: store.isTransient })
    const problem =
      got === undefined
        ? 'it no longer exists'
        : got.cut
          ? `it is longer than the ${file.size} bytes expected (cut there)`
          : file.md5 && got.md5 !== file.md5
            ? `its MD5 is ${got.md5}, not the ${file.md5} expected`
            : !file.md5 && file.size !== undefined && got.size !== file.size
              ? `it is ${got.size} bytes, not the ${file.size} expected`
              : undefined
    if (problem === undefined) return { size: got!.size, md5: got!.md5 }
    if (read === 2)
      throw new StoreChanged(
        `${file.key} in ${store.display} is not the file of the build being popped: ${problem}, twice. A push may be rewriting it, or the bytes changed on the way`,
      )
  }
}

/**
 * Streams one key into `target`, hashing on the way: the state records what is on disk, not what
 * the store claimed. Stops past `limit` bytes (`cut`): a body longer than listed is never read whole.
 * The bytes go to disk `WRITE_BATCH_BYTES` at a time, so most files take one write.
 *
 * Through the thread pool, not written synchronously once a small body is in: for the 2,000 files
 * of the bench's build (20 MB under 512 KiB), `writeFileSync` spent 430 ms of CPU where the pool's
 * open, write and close spent 500 ms, almost all of both in the kernel, but on the main thread,
 * 1.3 to 3.8 s of wall time (medians of 7, load 11 to 12) where the pool spent 0.65 to 1.2 s
 * beside it; a cold pop measured the same CPU either way (5.47 and 5.42 s, medians of 4).
 */
async function downloadFile(
  store: Store,
  key: string,
  target: string,
  limit: number | undefined,
  signal: AbortSignal,
): Promise<{ size: number; md5: string; cut: boolean } | undefined> {
  const body = await abortable(store.read(key), signal, (late) => late?.destroy())
  if (!body) return undefined
  const stop = () => body.destroy(signal.reason)
  signal.addEventListener('abort', stop, { once: true })
  if (signal.aborted) stop()
  const hash = createHash('md5')
  let size = 0
  let cut = false
  const file = await open(target, 'w').catch((error) => {
    body.destroy()
    throw error
  })
  try {
    let held: Buffer[] = []
    let heldBytes = 0
    const flush = async () => {
      await file.writeFile(held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes))
      held = []
      heldBytes = 0
    }
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length
      if (limit !== undefined && size > limit) {
        cut = true
        break // destroys the body
      }
      hash.update(chunk)
      held.push(chunk)
      heldBytes += chunk.length
      if (heldBytes >= WRITE_BATCH_BYTES) await flush()
    }
    if (heldBytes > 0) await flush()
  } finally {
    signal.removeEventListener('abort', stop)
    await file.close()
  }
  return { size, md5: hash.digest('hex'), cut }
}
