import { randomBytes } from 'node:crypto'
import type { Stats } from 'node:fs'
import { createReadStream } from 'node:fs'
import { copyFile, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { assertSafeRelpath } from '../core/model/paths'
import type { PutBody, PutResult, Store, StoreEntry } from '../core/store/store'
import { isTransient } from '../core/util/concurrency'

const DRIVER_NAME = 'local'

/** Every write renames a new file into place: a new inode, so the tag changes even within one mtime tick. */
const etagOf = (info: Stats) => `${info.ino.toString(16)}-${info.mtimeMs.toString(16)}-${info.size.toString(16)}`

/**
 * Where writes are made before they are renamed into place: beside the keys' own directories
 * (`data/`, `manifests/`), so any file name a build has (up to 255 bytes, `*.tmp` included) is a
 * key, and on the same file system, so the rename is atomic.
 */
const TEMPORARY_DIR = '.writing'

/**
 * A directory with the same keys as the S3 store (`data/<app>/...`, `manifests/<app>/<ts>`), for a
 * first build with no server and for tests. Writes go to a temporary file and are renamed into
 * place, so a reader never sees half a file. Headers are not kept: they are in the manifest.
 */
export function createLocalStore(root: string): Store {
  const pathOf = (key: string) => join(root, assertSafeRelpath(key))
  return {
    kind: DRIVER_NAME,
    layout: 'flat',
    display: root,
    isTransient,
    // The kernel copies a file on disk: nothing is held in memory.
    bufferedBytes: () => 0,
    async put(key: string, body: PutBody): Promise<PutResult> {
      const target = pathOf(key)
      const temporary = join(root, TEMPORARY_DIR, randomBytes(8).toString('hex'))
      await Promise.all([mkdir(dirname(target), { recursive: true }), mkdir(dirname(temporary), { recursive: true })])
      try {
        await ('file' in body ? copyFile(body.file, temporary) : writeFile(temporary, body))
        await rename(temporary, target)
        return { etag: etagOf(await stat(target)) }
      } catch (error) {
        await rm(temporary, { force: true })
        throw error
      }
    },
    async read(key: string): Promise<Readable | undefined> {
      const path = pathOf(key)
      const info = await stat(path).catch(() => undefined)
      return info?.isFile() ? createReadStream(path) : undefined
    },
    async *list(prefix: string): AsyncIterable<StoreEntry> {
      // Walk only the deepest directory the prefix names fully.
      const start = join(root, prefix.slice(0, prefix.lastIndexOf('/') + 1))
      for await (const path of walk(start)) {
        const key = relative(root, path).split(sep).join('/')
        if (key.startsWith(prefix) && !key.startsWith(`${TEMPORARY_DIR}/`)) {
          const info = await stat(path).catch(() => undefined)
          if (!info) continue // deleted since the directory was read
          yield { key, size: info.size, lastModified: info.mtime, etag: etagOf(info) }
        }
      }
    },
    async delete(keys: readonly string[]) {
      await Promise.all(keys.map((key) => rm(pathOf(key), { force: true })))
    },
    async close() {},
  }
}

async function* walk(directory: string): AsyncGenerator<string> {
  const entries = await readdir(directory, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return []
    throw error
  })
  for (const entry of entries) {
    const path = join(directory, entry.name)
    if (entry.isDirectory()) yield* walk(path)
    else if (entry.isFile()) yield path
  }
}
