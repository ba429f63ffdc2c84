import { randomBytes } from 'node:crypto'
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, rmdir, symlink, writeFile } from 'node:fs/promises'
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
 * A build directory is filled before the link points at it, and its state file is written only
 * after: so a directory with a state file has been served, and once something else is served it
 * never will be again. That rule alone lets concurrent writers clean up after each other without a
 * lock: nothing deletes a directory without a state file unless it was left for an hour.
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
  /** One of our build directories; `state` is missing only if a crash came between the swap and its write. */
  | { kind: 'build'; id: string; dir: string; state?: BuildState }
  /** A plain directory (an older `pop`, or made by hand): moved into the builds directory by the first swap. */
  | { kind: 'directory'; dir: string }
  /** A symbolic link we did not make: the swap replaces the link and leaves what it points at alone. */
  | { kind: 'foreign-link' }

/** A directory left without a state file for this long was abandoned by a crashed run (a live one fills it sooner). */
const ABANDONED_MS = 60 * 60 * 1000
const HASH_CONCURRENCY = 8

const buildsDirOf = (dest: string): string => join(dirname(dest), `.${basename(dest)}.builds`)

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
  await writeFile(temporary, `${JSON.stringify(state)}\n`)
  await rename(temporary, join(builds, `${id}.json`))
}

/**
 * Points `dest` at the build directory `id` with one atomic rename, records its state, and removes
 * build directories that are no longer served, except the one just replaced: a reader that resolved
 * `dest` a moment before the swap can still finish from it.
 *
 * A plain directory at `dest` (an older `pop`'s) is first moved into the builds directory: that one
 * time, `dest` is missing between two renames (a few microseconds), because a directory cannot be
 * replaced by a link in one step.
 */
export async function publishBuildDir(dest: string, id: string, state: BuildState, served: Served): Promise<void> {
  const builds = buildsDirOf(dest)
  let previous = served.kind === 'build' ? served.id : undefined
  let adopted: string | undefined
  if (served.kind === 'directory') {
    adopted = `adopted-${suffix()}`
    await rename(dest, join(builds, adopted)).catch((error) => {
      if (errorCode(error) === 'ENOENT')
        adopted = undefined // another run moved it first
      else throw cannotReplace(dest, error)
    })
    previous = adopted
  }
  const link = join(builds, `.link-${suffix()}`)
  await symlink(relative(dirname(dest), join(builds, id)), link, 'dir')
  try {
    await rename(link, dest)
  } catch (error) {
    await rm(link, { force: true })
    if (adopted) await rename(join(builds, adopted), dest).catch(() => {})
    throw cannotReplace(dest, error)
  }
  await writeState(dest, id, state)
  // It was served (as dest itself) and never will be again: its state file says so to the next cleanup.
  if (adopted) await writeState(dest, adopted, { app: state.app, store: `a plain directory at ${dest}`, poppedAt: new Date().toISOString(), files: {} })
  await removeRetired(dest, new Set([id, ...(previous ? [previous] : [])]))
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
 * Deletes build directories that were served and are not any more, leftovers of crashed runs, and
 * state files whose directory is gone. The builds directory is listed before `dest` is read: a
 * directory listed with its state file was served before that read, so if `dest` does not point
 * at it then, nothing ever will again.
 */
async function removeRetired(dest: string, keep: ReadonlySet<string>): Promise<void> {
  const builds = buildsDirOf(dest)
  const entries = await readdir(builds, { withFileTypes: true }).catch(() => [])
  const names = new Set(entries.map((entry) => entry.name))
  const current = await linkedBuild(dest)
  for (const { name } of entries) {
    const path = join(builds, name)
    if (name.startsWith('.trash-')) await rm(path, { recursive: true, force: true })
    else if (name.endsWith('.json')) {
      if (!names.has(name.slice(0, -'.json'.length))) await rm(path, { force: true })
    } else if (name === current || keep.has(name)) continue
    else if (names.has(`${name}.json`) || (await olderThan(path, ABANDONED_MS))) {
      // Renamed first, so that a second cleaner never deletes half of what the first one deletes.
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
