import { setImmediate as turn } from 'node:timers/promises'
import { describeError, PushCacheError } from '../model/errors'
import { shareStrings } from '../model/manifest'
import { planSync, type SyncPlan } from '../model/sync-plan'
import { manifestsAround, type StoredBuild } from '../store/builds'
import { type HeldFiles, heldFiles, listHeld } from '../store/held-files'
import { md5FileInTurns } from '../util/digest'
import { giveBack, takeBuffer } from '../util/file-buffers'
import type { PlannedUpload } from './plan'
import type { PushRun } from './run'

const noop = () => {}

/** Bytes hashed between two turns of the event loop: the store's answers wait no longer than that takes (~1 ms). */
const HASHED_PER_TURN = 1024 * 1024

/** The plan hashes only files whose name the store holds; the others are hashed as they are written. */
export type HashedUpload = PlannedUpload & { md5?: string }

/**
 * What to write. What the store held is not kept: each unchanged file carries where its bytes are
 * (its key's tag, or the build whose key holds them), so the listing and the newest manifest
 * (~10 MB for 100,000 files) are freed before the push writes its own.
 */
export interface StorePlan {
  sync: SyncPlan<HashedUpload>
  /** The build already at this push's timestamp, if any. */
  own?: StoredBuild
  /** Whether a build newer than this push's was listed (under the writer lock: no push lands one meanwhile). */
  newer: boolean
  /** Versioned stores: a push that died at this timestamp left its build marked in progress. */
  ownLocked: boolean
}

/** The plan phase: what to write, against what the store holds. A failure here has written nothing of the build. */
export function planPhase(run: PushRun, files: readonly PlannedUpload[], newest: StoredBuild | null | undefined, comparesHeaders: boolean): Promise<StorePlan> {
  const { store, options } = run
  return run.timed('plan', () =>
    planAgainstStore(run, files, newest, comparesHeaders).catch((error) => {
      // Hashing reads the build beside the store's listing: a file it cannot read is the build's fault.
      const local = error as NodeJS.ErrnoException
      if (local.path && local.syscall && files.some((file) => file.path === local.path))
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `Could not read ${local.path} of the build (${local.code ?? local.syscall}). Nothing of build ${options.timestamp} was written.`,
          { cause: error },
        )
      throw new PushCacheError(
        'UPLOAD_FAILED',
        `Could not learn what ${store.display} holds for ${options.app}: ${describeError(error)}. Nothing of build ${options.timestamp} was written.`,
        { cause: error },
      )
    }),
  )
}

/**
 * Sorts the build's files by what the store holds for them. Every read runs at once: the data
 * listing, the manifests (the newest, the one at this push's timestamp) and the hashing of the
 * files the store holds. Under the app's writer lock, what it reads is what the push may rely on.
 */
async function planAgainstStore(
  { store, options, logger, retry }: PushRun,
  files: readonly PlannedUpload[],
  newest: StoredBuild | null | undefined,
  comparesHeaders: boolean,
): Promise<StorePlan> {
  // Hashing starts at once, beside the read of the store; once that read tells which names the
  // store holds, only those are still hashed: a new name is written whatever its bytes.
  let held: HeldFiles | undefined
  let failed = false
  const relpaths = files.map((file) => file.relpath)
  const large = largeFilesInTurn(files)
  // Each read is retried as a whole, so nothing inside retries: a store that keeps failing costs
  // `retries + 1` attempts, not their square (the README's bound).
  const manifestsRead = retry(`the manifests of ${options.app}`, () => manifestsAround(store, options.app, options.timestamp, 0, newest))
  const reads = Promise.all([manifestsRead, retry(`the files of ${options.app}`, () => listHeld(store, options.app, relpaths, large.listed))])
  // The newest manifest's strings equal to the build's are dropped as soon as it is read, not after the listing.
  let kept = (_relpath: string, md5: string) => md5
  manifestsRead.then(({ newest: read }) => {
    if (read?.manifest) kept = shareStrings(read.manifest, relpaths)
  }, noop)
  const worth = (file: PlannedUpload) => !options.force && !failed && (held === undefined || held.get(file.relpath)?.md5 !== undefined)
  const hashing = hashWhere(files, worth, large, (relpath, md5) => kept(relpath, md5))
  hashing.catch(noop) // awaited below; a store error must not leave it unhandled
  reads.then(large.answered, large.answered)
  try {
    const [manifests, listing] = await reads
    const state = heldFiles(store, options.app, listing, manifests.newest)
    held = state // from now on only names the store holds are worth hashing
    const sync = planSync(await hashing, state, { headers: comparesHeaders })
    if (options.force) {
      sync.changed.push(...sync.unchanged)
      sync.unchanged = []
    }
    if (store.exists && sync.unchanged.length > 0) {
      // A key deleted behind our back (eviction, a hand-made cleanup) is written again.
      const present = await store.exists(sync.unchanged.map((file) => state.get(file.relpath)!.key))
      sync.added.push(...sync.unchanged.filter((_, index) => !present[index]))
      sync.unchanged = sync.unchanged.filter((_, index) => present[index])
    }
    logDecisions(logger, sync, state)
    for (const file of sync.unchanged) {
      const { etag, version } = state.get(file.relpath)!
      file.etag = etag
      file.version = version
    }
    return { sync, own: manifests.at, newer: manifests.newer, ownLocked: manifests.atLocked }
  } catch (error) {
    failed = true
    throw error
  }
}

/** With `debug`: each file's fate and why, so that a run that writes nothing still says what it decided. */
function logDecisions(logger: PushRun['logger'], sync: SyncPlan<HashedUpload>, held: HeldFiles): void {
  for (const file of sync.added) logger.debug(`plan: ${file.relpath} is new (the store holds no ${file.key}): write`)
  for (const file of sync.unchanged) logger.debug(`plan: ${file.relpath} is unchanged (same MD5 and headers as ${held.get(file.relpath)?.key}): skip`)
  for (const file of sync.changed) {
    const copy = held.get(file.relpath)
    const differs = (['md5', 'size', 'contentType', 'cacheControl'] as const).filter((field) => copy?.[field] !== undefined && file[field] !== copy[field])
    logger.debug(`plan: ${file.relpath} changed (${differs.length > 0 ? `${differs.join(', ')} differ` : 'not comparable, or every file is written'}): write`)
  }
}

/** Files larger than one read: the event loop turns within them, and the store's answer may spare them. */
const isLarge = (file: PlannedUpload) => file.size > HASHED_PER_TURN

/**
 * The large files, in the order they become worth reading: each as soon as the data listing names
 * it (a range of the listing may answer long before the last), the others once the whole answer is
 * in. Read before either, a large file the store does not hold would be read twice, here and when
 * it is written (and hashed from those bytes).
 */
function largeFilesInTurn(files: readonly PlannedUpload[]) {
  const ready: PlannedUpload[] = []
  const queued = new Set<PlannedUpload>()
  let done = false
  let wake: (() => void) | undefined
  const queue = (file: PlannedUpload) => {
    if (!isLarge(file) || queued.has(file)) return
    queued.add(file)
    ready.push(file)
    wake?.()
  }
  return {
    /** The listing named `files[index]` (again, when a range is listed anew). */
    listed: (index: number) => queue(files[index]!),
    /** The store answered, or failed to. */
    answered() {
      done = true
      for (const file of files) queue(file)
      wake?.()
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const file = ready.shift()
        if (file) yield file
        else if (done) return
        else await new Promise<void>((resolve) => (wake = resolve))
      }
    },
  }
}

/**
 * `files`, each given the MD5 that `worth` still wants when its turn comes, as `kept` gives it (an
 * equal string already held). In place, not copies: a copy of each planned file is ~8 MB more for
 * 100,000 files; the plan is made for this push only.
 * The small files go while the store is asked, the large ones as `large` hands them on.
 *
 * Read synchronously, one file after another, the event loop let in after every MiB: a build's
 * files were just written, and read from the page cache in microseconds. Through the thread pool
 * each read cost more CPU than hashing its bytes (2,000 files, 72 MB: ~330 ms against ~160), on
 * the thread that also parses the store's answers.
 */
async function hashWhere(
  files: readonly PlannedUpload[],
  worth: (file: PlannedUpload) => boolean,
  large: AsyncIterable<PlannedUpload>,
  kept: (relpath: string, md5: string) => string,
): Promise<readonly HashedUpload[]> {
  const hashed: readonly HashedUpload[] = files
  const chunk = takeBuffer(HASHED_PER_TURN)
  const hash = async (file: PlannedUpload) => {
    // The planner takes in an answer (`worth`) before the file is read.
    await turn()
    if (!worth(file)) return
    const md5 = await md5FileInTurns(file.path, chunk, () => worth(file))
    file.md5 = md5 === undefined ? undefined : kept(file.relpath, md5)
  }
  try {
    for (const file of hashed) if (!isLarge(file)) await hash(file)
    for await (const file of large) await hash(file)
  } finally {
    giveBack(chunk)
  }
  return hashed
}
