import { type Dirent, lstatSync, readdirSync, realpathSync, type Stats, statSync } from 'node:fs'
import { isAbsolute, join, relative, sep } from 'node:path'
import { PushCacheError } from '../model/errors'
import { unsafePathReason } from '../model/paths'
import { flatString } from '../util/flat-string'
import { type Logger, silentLogger } from '../util/logger'
import type { BuildFile } from './plan'

export const toPosix = (path: string) => (sep === '/' ? path : path.split(sep).join('/'))

const isInside = (root: string, path: string) => path === root || path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`)

/** What a directory entry is when it is neither a file, a directory nor a link. */
function specialKind(entry: Dirent | Stats): string {
  if (entry.isFIFO()) return 'a FIFO'
  if (entry.isSocket()) return 'a socket'
  if (entry.isBlockDevice() || entry.isCharacterDevice()) return 'a device'
  return 'not a regular file'
}

/** Why a link cannot be followed, from the error `realpath` gave. */
const brokenLink = (error: NodeJS.ErrnoException) =>
  error.code === 'ELOOP'
    ? 'a symbolic link loop'
    : error.code === 'ENOENT'
      ? 'a symbolic link to nothing'
      : `a symbolic link that cannot be read (${error.code})`

/**
 * The files of a build under `root`: every regular file below it, or only `relpaths` when the
 * bundler told us what it emitted.
 *
 * Nothing outside `root` is read. A symbolic link is followed only when it resolves inside `root`
 * (a link between two files of the build is fine); one that leads outside, dangles or loops is
 * skipped with a warning naming it, and so are FIFOs, sockets and devices. A file whose name a
 * store or a server could read as another path (`..`, a backslash, a control character) fails the
 * push with `UNSAFE_PATH` before anything is written. Directories that cannot be read fail loudly.
 *
 * Read synchronously: a build was just written, its inodes are in the page cache, and each `stat`
 * through the thread pool cost more CPU than the call itself (2,000 files: ~80 ms against ~30 ms,
 * on the main thread that a push's first request waits on).
 */
export async function collectFiles(root: string, relpaths?: readonly string[], logger: Pick<Logger, 'warn'> = silentLogger): Promise<BuildFile[]> {
  if (!isDirectory(root))
    throw new PushCacheError(
      'NO_FILES',
      `The output directory ${root} does not exist or is not a directory. Build first, or point to the directory the bundler writes.`,
    )
  const realRoot = realpathSync(root)
  const skip = (path: string, why: string) => logger.warn(`skipped ${toPosix(relative(root, path))}: ${why}; it is not pushed`)
  const inRoot = root.endsWith(sep) ? root : `${root}${sep}`
  const found = relpaths ? pickEmitted(root, realRoot, relpaths, skip).map(relpathIn(root, inRoot)) : walk(root, realRoot, skip)
  return found.map((relpath) => {
    const problem = unsafePathReason(relpath)
    if (problem)
      throw new PushCacheError(
        'UNSAFE_PATH',
        `Refusing ${JSON.stringify(relpath)} in ${root}: its path ${problem}, which stores and servers read differently. Rename the file in the build, or leave it out of the output directory.`,
      )
    return new FoundFile(inRoot, relpath, asSmallInteger(statSync(pathIn(inRoot, relpath)).size))
  })
}

/** The path of `relpath` (POSIX) under the root `inRoot` (separator at its end). */
const pathIn = (inRoot: string, relpath: string) => `${inRoot}${sep === '/' ? relpath : relpath.split('/').join(sep)}`

/**
 * A file of the build, its path made from the root when asked: held, each path (~80 B) and the
 * relpath sliced from it (~30 B) were ~60 B more per file than a relpath of its own, 6 MB for
 * 100,000 files, for the whole push. It is read once or twice per file (hashed, written).
 */
class FoundFile implements BuildFile {
  constructor(
    private readonly inRoot: string,
    readonly relpath: string,
    readonly size: number,
  ) {}

  get path(): string {
    return pathIn(this.inRoot, this.relpath)
  }
}

/**
 * `path`'s relpath under `root`, flat: `relative` would resolve each path anew, and a slice would
 * hold the whole path for as long as the relpath lives.
 */
const relpathIn = (root: string, inRoot: string) => (path: string) =>
  flatString(toPosix(path.startsWith(inRoot) && isAbsolute(root) ? path.slice(inRoot.length) : relative(root, path)))

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

/**
 * `size` as V8 stores small integers, in the field itself: a size from `stat` is a double, which a
 * field holds boxed, 16 B more per file (1.6 MB for 100,000). Sizes past 2 GiB stay doubles.
 */
const asSmallInteger = (size: number) => (size <= 0x7fffffff ? size | 0 : size)

type Skip = (path: string, why: string) => void

const outside = (root: string, target: string) => `it resolves to ${target}, outside the output directory ${root}`

/** The regular files among what the bundler said it emitted, each resolved inside the root. */
function pickEmitted(root: string, realRoot: string, relpaths: readonly string[], skip: Skip): string[] {
  const picked = relpaths.map((relpath) => {
    // webpack may emit outside its output path (`../x.js`, an absolute name): resolved and skipped below.
    const path = isAbsolute(relpath) ? relpath : join(root, relpath)
    const skipped = (why: string) => {
      skip(path, why)
      return undefined
    }
    // A path that names no file at all is the bundler's mistake: fail as before, loudly.
    lstatSync(path)
    // Also catches `../x` and a directory on the way that links elsewhere.
    const resolved = resolveInside(root, realRoot, path)
    if ('skip' in resolved) return skipped(resolved.skip)
    const { info } = resolved
    if (info.isFile()) return path
    return info.isDirectory() ? undefined : skipped(specialKind(info))
  })
  return picked.filter((path) => path !== undefined)
}

/** Where `path` really leads when that is inside the root, or why it is skipped (a broken link, a way out). */
function resolveInside(root: string, realRoot: string, path: string): { target: string; info: Stats } | { skip: string } {
  let target: string
  try {
    target = realpathSync(path)
  } catch (error) {
    return { skip: brokenLink(error as NodeJS.ErrnoException) }
  }
  if (!isInside(realRoot, target)) return { skip: outside(root, target) }
  return { target, info: statSync(target) }
}

/**
 * The relpaths of every regular file below `root`, links inside it followed. `branch` holds the
 * real paths of the directories from the root down to the one being read: a link to one of them is
 * a loop. `under` is the relpath of `directory`, `/` at its end.
 */
function walk(root: string, realRoot: string, skip: Skip): string[] {
  const visit = (directory: string, under: string, branch: readonly string[]): string[] => {
    const entries = readdirSync(directory, { withFileTypes: true })
    // Flat: the walk of a large build holds all its relpaths at once, and the push after it.
    const files = entries.filter((entry) => entry.isFile()).map((entry) => flatString(`${under}${entry.name}`))
    const nested = entries
      .filter((entry) => !entry.isFile())
      .map((entry): string[] => {
        const path = join(directory, entry.name)
        const skipped = (why: string) => {
          skip(path, why)
          return []
        }
        const below = `${under}${entry.name}/`
        if (entry.isDirectory()) return visit(path, below, [...branch, join(branch.at(-1)!, entry.name)])
        if (!entry.isSymbolicLink()) return skipped(specialKind(entry))
        const resolved = resolveInside(root, realRoot, path)
        if ('skip' in resolved) return skipped(resolved.skip)
        const { target, info } = resolved
        if (info.isFile()) return [flatString(`${under}${entry.name}`)]
        if (!info.isDirectory()) return skipped(specialKind(info))
        if (branch.includes(target)) return skipped(`a symbolic link loop (to ${toPosix(relative(realRoot, target)) || '.'}, which contains it)`)
        return visit(path, below, [...branch, target])
      })
    return [...files, ...nested.flat()]
  }
  return visit(root, '', [realRoot])
}
