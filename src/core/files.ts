import { readdir, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { PushCacheError } from './errors'
import type { BuildFile } from './plan'

export const toPosix = (path: string) => (sep === '/' ? path : path.split(sep).join('/'))

/**
 * The files of a build under `root`: every regular file below it, or only `relpaths` when the
 * bundler told us what it emitted. Symbolic links are followed; directories that cannot be read fail loudly.
 */
export async function collectFiles(root: string, relpaths?: readonly string[]): Promise<BuildFile[]> {
  const rootStat = await stat(root).catch(() => undefined)
  if (!rootStat?.isDirectory())
    throw new PushCacheError(
      'NO_FILES',
      `The output directory ${root} does not exist or is not a directory. Build first, or point to the directory the bundler writes.`,
    )
  const paths = relpaths ? relpaths.map((relpath) => join(root, relpath)) : await walk(root)
  const files = await Promise.all(
    paths.map(async (path) => {
      const info = await stat(path)
      return info.isFile() ? { relpath: toPosix(relative(root, path)), path, size: info.size } : undefined
    }),
  )
  return files.filter((file): file is BuildFile => file !== undefined)
}

async function walk(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true })
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const path = join(directory, entry.name)
      if (entry.isDirectory()) return walk(path)
      if (entry.isSymbolicLink() && (await stat(path)).isDirectory()) return walk(path)
      return [path]
    }),
  )
  return nested.flat()
}
