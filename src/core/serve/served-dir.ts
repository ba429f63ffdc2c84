import { randomBytes } from 'node:crypto'
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, rmdir, symlink, utimes, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { describeError, PushCacheError } from '../model/errors'
import { collectFiles } from '../push/collect-files'
import { forEachLimited } from '../util/concurrency'
import { md5File } from '../util/digest'

/**
 * The served directory, after kubelet's AtomicWriter: `dest` is a symbolic link to one complete
 * build directory kept beside it, and an update is one `rename()` of a new link over `dest`. Every
 * reader opens either the old build or the new one: never a moment without `dest`, never a tree
 * with files of both.
 *
 *     www -> .www.builds/1700000000-3f2a9c1b
 *     .www.builds/1700000000-3f2a9c1b/        the files
 *     .www.builds/1700000000-3f2a9c1b.json    what they are (BuildState), written once it is served
 *
 * One writer at a time (`.lock` in the builds directory, see {@link lockDest}): a second `pop` or
 * `watch` on the same `dest` waits for the first. A build directory is filled and its state file
 * written before the link points at it, so a switch happens only after every local write succeeded.
 * A directory that is not served any more is removed once it has been retired for
 * `RETIRED_KEEP_MS`: a reader that resolved `dest` just before a switch can still finish from it.
 */

/** What `<id>.json` records of a build directory, so that the next update reads no file again. */
export interface BuildState {
  app: string
  /** The store it came from (display form: no secret). */
  store: string
  /** The newest build (manifest timestamp) in the store when it was read; absent when there was none. */
  timestamp?: number
  /** When the directory was filled (ISO 8601). */
  poppedAt: string
  files: Record<string, { size: number; md5: string }>
}

/** What `dest` is now. */
export type Served =
  | { kind: 'none' }
  /** One of our build directories; `state` is missing only for one switched by an older version that crashed before writing it. */
  | { kind: 'build'; id: string; dir: string; state?: BuildState }
  /** A plain directory (an older `pop`, or made by hand): moved into the builds directory by the first swap. */
  | { kind: 'directory'; dir: string }
  /** A symbolic link we did not make: the swap replaces the link and leaves what it points at alone. */
  | { kind: 'foreign-link' }

/** A directory left without a state file for this long was abandoned by a crashed run (a live one fills it sooner). */
const ABANDONED_MS = 60 * 60 * 1000
/** How long a build directory stays after it stopped being served: readers resolve `dest` and open a file within milliseconds. */
const RETIRED_KEEP_MS = 60 * 1000
const HASH_CONCURRENCY = 8
/** The web server configs in the builds directory (see server-config.ts): they outlive every build. */
export const SERVER_CONFIG_FILES = ['server.nginx.conf', 'server.caddy'] as const

export const buildsDirOf = (dest: string): string => join(dirname(dest), `.${basename(dest)}.builds`)

const suffix = () => randomBytes(4).toString('hex')
const errorCode = (error: unknown) => (error as NodeJS.ErrnoException)?.code

/** The build directory `dest` links to, if it is one of ours. */
async function linkedBuild(dest: string): Promise<string | undefined> {
  const target = await readlink(dest).catch(() => undefined)
  if (target === undefined) return undefined
  const dir = resolve(dirname(dest), target)
  return dirname(dir) === buildsDirOf(dest) ? basename(dir) : undefined
}

export async function readServed(dest: string): Promise<Served> {
  const info = await lstat(dest).catch((error) => {
    if (errorCode(error) === 'ENOENT') return undefined
    throw error
  })
  if (!info) return { kind: 'none' }
  if (info.isSymbolicLink()) {
    const id = await linkedBuild(dest)
    if (id === undefined) return { kind: 'foreign-link' }
    const dir = join(buildsDirOf(dest), id)
    return { kind: 'build', id, dir, state: await readState(dest, id) }
  }
  if (info.isDirectory()) return { kind: 'directory', dir: dest }
  throw new PushCacheError('INVALID_OPTION', `The destination ${dest} is a file, not a directory. Remove it, or pop into another path.`)
}

async function readState(dest: string, id: string): Promise<BuildState | undefined> {
  try {
    const state = JSON.parse(await readFile(join(buildsDirOf(dest), `${id}.json`), 'utf8')) as BuildState
    const entries = Object.values(state?.files ?? {})
    const valid = typeof state.app === 'string' && entries.every((entry) => typeof entry?.md5 === 'string' && typeof entry.size === 'number')
    return valid && entries.length > 0 ? state : undefined
  } catch {
    return undefined // missing or unreadable: the files are then unknown, and downloaded again
  }
}

/**
 * relpath → size and MD5 of what `dest` serves: from the state file, or, for a directory without
 * one (an older `pop`'s), by reading every file, which only pays when the store's MD5s are known.
 */
export async function servedFiles(served: Served, hashIfUnknown: boolean): Promise<Map<string, { size: number; md5: string }>> {
  if (served.kind === 'build' && served.state) return new Map(Object.entries(served.state.files))
  if ((served.kind !== 'build' && served.kind !== 'directory') || !hashIfUnknown) return new Map()
  const files = await collectFiles(served.dir).catch(() => [])
  const held = new Map<string, { size: number; md5: string }>()
  await forEachLimited(files, HASH_CONCURRENCY, async (file) => {
    held.set(file.relpath, { size: file.size, md5: await md5File(file.path) })
  })
  return held
}

/** A fresh, empty build directory beside `dest`, not served yet. */
export async function createBuildDir(dest: string, timestamp: number | undefined): Promise<{ id: string; dir: string }> {
  const builds = buildsDirOf(dest)
  await mkdir(builds, { recursive: true })
  const id = `${timestamp ?? 'build'}-${suffix()}`
  const dir = join(builds, id)
  await mkdir(dir)
  return { id, dir }
}

/** Removes a build directory that will not be served, and the builds directory if nothing else is left in it. */
export async function discardBuildDir(dest: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  await rmdir(buildsDirOf(dest)).catch(() => {}) // not empty, or already gone: both fine
}

/** Records what a build directory holds (a temporary file renamed into place: never half written). */
export async function writeState(dest: string, id: string, state: BuildState): Promise<void> {
  const builds = buildsDirOf(dest)
  const temporary = join(builds, `.state-${suffix()}`)
  try {
    await writeFile(temporary, `${JSON.stringify(state)}\n`)
    await rename(temporary, join(builds, `${id}.json`))
  } catch (error) {
    // A full disk fails the write half-way: nothing of it may stay behind.
    await rm(temporary, { force: true })
    throw error
  }
}

/**
 * Records the state of build directory `id`, then points `dest` at it with one atomic rename, and
 * removes build directories retired long enough ago. A failure before the switch leaves `dest` as
 * it was (the caller discards the directory); what follows the switch is housekeeping that the
 * next run repeats, so it cannot fail the switch that already happened.
 *
 * A plain directory at `dest` (an older `pop`'s) is first moved into the builds directory: that one
 * time, `dest` is missing between two renames (a few microseconds), because a directory cannot be
 * replaced by a link in one step. Callers hold the lock ({@link lockDest}).
 */
export async function publishBuildDir(dest: string, id: string, state: BuildState, served: Served): Promise<void> {
  const builds = buildsDirOf(dest)
  await writeState(dest, id, state)
  let previous = served.kind === 'build' ? served.id : undefined
  let adopted: string | undefined
  if (served.kind === 'directory') {
    adopted = `adopted-${suffix()}`
    await rename(dest, join(builds, adopted)).catch((error) => {
      if (errorCode(error) === 'ENOENT')
        adopted = undefined // moved by hand since it was read
      else throw cannotReplace(dest, error)
    })
    previous = adopted
  }
  const link = join(builds, `.link-${suffix()}`)
  try {
    await symlink(relative(dirname(dest), join(builds, id)), link, 'dir')
    await rename(link, dest)
  } catch (error) {
    await rm(link, { force: true })
    await rm(join(builds, `${id}.json`), { force: true })
    if (adopted) await rename(join(builds, adopted), dest).catch(() => {})
    throw cannotReplace(dest, error)
  }
  await retire(dest, previous, adopted, state.app).catch(() => {})
  await removeRetired(dest, new Set([id, ...(previous ? [previous] : [])])).catch(() => {})
}

/** Dates the retirement of the directory just replaced (its state file's mtime), so that it is kept `RETIRED_KEEP_MS` from now. */
async function retire(dest: string, previous: string | undefined, adopted: string | undefined, app: string): Promise<void> {
  if (adopted) await writeState(dest, adopted, { app, store: `a plain directory at ${dest}`, poppedAt: new Date().toISOString(), files: {} })
  else if (previous) {
    const now = new Date()
    await utimes(join(buildsDirOf(dest), `${previous}.json`), now, now).catch(() => {}) // no state file: a crash left it, the hour rule applies
  }
}

function cannotReplace(dest: string, error: unknown): PushCacheError {
  const mountPoint = ['EBUSY', 'EXDEV'].includes(errorCode(error) ?? '')
  return new PushCacheError(
    'DOWNLOAD_FAILED',
    `Could not switch ${dest} to the new build: ${describeError(error)}. ${
      mountPoint
        ? `${dest} looks like a mount point: pop into a path inside the volume (e.g. ${join(dest, 'app')}) and serve that.`
        : `Check that the process may rename entries in ${dirname(dest)}.`
    }`,
    { cause: error },
  )
}

async function olderThan(path: string, ms: number): Promise<boolean> {
  const info = await lstat(path).catch(() => undefined)
  return info !== undefined && Date.now() - info.mtimeMs > ms
}

/**
 * Deletes build directories retired more than `RETIRED_KEEP_MS` ago (their state file's mtime says
 * when), leftovers of crashed runs, and state files whose directory is gone. Only the lock holder
 * calls it, so no directory is half-way to being served.
 */
async function removeRetired(dest: string, keep: ReadonlySet<string>): Promise<void> {
  const builds = buildsDirOf(dest)
  const entries = await readdir(builds, { withFileTypes: true }).catch(() => [])
  const names = new Set(entries.map((entry) => entry.name))
  const current = await linkedBuild(dest)
  for (const { name } of entries) {
    const path = join(builds, name)
    if (name === LOCK_NAME || name === current || keep.has(name) || (SERVER_CONFIG_FILES as readonly string[]).includes(name)) continue
    if (name.startsWith('.trash-') || name.startsWith('.state-') || name.startsWith('.link-')) await rm(path, { recursive: true, force: true })
    else if (name.endsWith('.json')) {
      if (!names.has(name.slice(0, -'.json'.length))) await rm(path, { force: true })
    } else if (names.has(`${name}.json`) ? await olderThan(`${path}.json`, RETIRED_KEEP_MS) : await olderThan(path, ABANDONED_MS)) {
      // Renamed first, so that it is never seen half deleted.
      const trash = join(builds, `.trash-${suffix()}`)
      if (
        await rename(path, trash).then(
          () => true,
          () => false,
        )
      ) {
        await rm(`${path}.json`, { force: true })
        await rm(trash, { recursive: true, force: true })
      }
    }
  }
}

const LOCK_NAME = '.lock'
/** How often a holder refreshes its lock, and how old a lock of another machine must be to count as left by a crash. */
const LOCK_REFRESH_MS = 30_000
const LOCK_STALE_MS = 4 * LOCK_REFRESH_MS
const LOCK_POLL_MS = 100

interface LockHolder {
  pid: number
  host: string
  since: string
}

/** Whether the process that wrote `holder` is gone: on this machine, by its pid; elsewhere, by the lock's age. */
async function isStale(lockPath: string, holder: LockHolder | undefined): Promise<boolean> {
  if (holder?.host === hostname() && Number.isSafeInteger(holder.pid)) {
    try {
      process.kill(holder.pid, 0)
      return false
    } catch (error) {
      if (errorCode(error) === 'ESRCH') return true
    }
  }
  return olderThan(lockPath, LOCK_STALE_MS)
}

/**
 * Makes this process the only writer of `dest` until `release()`: a lock file created with
 * `O_EXCL` in the builds directory, holding the pid and host, refreshed while held. A lock whose
 * process died (same host) or that was not refreshed for `LOCK_STALE_MS` is taken over. Waits at
 * most `waitMs` for a live holder, then fails naming it.
 */
export async function lockDest(
  dest: string,
  waitMs: number,
  { signal, onWait }: { signal?: AbortSignal; onWait?: (holder: string) => void } = {},
): Promise<{ release(): Promise<void> }> {
  const builds = buildsDirOf(dest)
  const lockPath = join(builds, LOCK_NAME)
  const me: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() }
  const giveUpAt = Date.now() + waitMs
  const describe = (holder: LockHolder | undefined) => (holder ? `pid ${holder.pid} on ${holder.host}, since ${holder.since}` : 'unknown')
  let waiting = false
  for (;;) {
    signal?.throwIfAborted()
    await mkdir(builds, { recursive: true })
    try {
      await writeFile(lockPath, JSON.stringify(me), { flag: 'wx' })
      break
    } catch (error) {
      // ENOENT: the builds directory was removed by the last holder between the two calls.
      if (errorCode(error) !== 'EEXIST' && errorCode(error) !== 'ENOENT') throw error
    }
    const holder = await readFile(lockPath, 'utf8').then(
      (text) => JSON.parse(text) as LockHolder,
      () => undefined,
    )
    if (await isStale(lockPath, holder)) {
      // Renamed away, not deleted: of two runs that found it stale, only one moves it. (A third that
      // read it stale before the takeover could still move the new lock. Even two writers at once
      // keep dest whole: each switch is to a complete directory, and no directory is removed
      // within a minute of its state file being written.)
      const stale = join(builds, `.trash-${suffix()}`)
      await rename(lockPath, stale).then(
        () => rm(stale, { force: true }),
        () => {},
      )
      continue
    }
    if (Date.now() > giveUpAt)
      throw new PushCacheError(
        'DOWNLOAD_FAILED',
        `Another pop or watch (${describe(holder)}) has been writing ${dest} for longer than ${Math.round(waitMs / 1000)} s. ${dest} was left as it is; run one writer per destination, or remove ${lockPath} if that process is gone.`,
      )
    if (!waiting) onWait?.(describe(holder))
    waiting = true
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS))
  }
  const refresh = setInterval(() => {
    const now = new Date()
    utimes(lockPath, now, now).catch(() => {})
  }, LOCK_REFRESH_MS)
  refresh.unref()
  return {
    async release() {
      clearInterval(refresh)
      await rm(lockPath, { force: true })
      await rmdir(builds).catch(() => {}) // not empty, or already gone: both fine
    },
  }
}
