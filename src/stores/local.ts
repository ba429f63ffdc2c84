import { randomBytes } from 'node:crypto'
import type { Stats } from 'node:fs'
import { createReadStream } from 'node:fs'
import { copyFile, link, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { assertSafeRelpath } from '../core/model/paths'
import { type DeleteOptions, PreconditionFailed, type PutBody, type PutOptions, type PutResult, type Store, type StoreEntry } from '../core/store/store'
import { isTransient } from '../core/util/concurrency'

const DRIVER_NAME = 'local'

/** Every write renames a new file into place: a new inode, so the tag changes even within one mtime tick. */
const etagOf = (info: Stats) => `${info.ino.toString(16)}-${info.mtimeMs.toString(16)}-${info.size.toString(16)}`

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException).code

/**
 * Takes `target` away from every other writer by renaming it aside (only one rename of a path
 * succeeds), then checks it is the version `etag` names; a version that is not is put back.
 * Resolves to the aside path, which the caller removes. The local store's compare-and-swap.
 */
async function claim(target: string, etag: string, key: string): Promise<string> {
  const aside = `${target}.${randomBytes(4).toString('hex')}.claim.tmp`
  try {
    await rename(target, aside)
  } catch (error) {
    if (codeOf(error) === 'ENOENT') throw new PreconditionFailed(key)
    throw error
  }
  if (etagOf(await stat(aside)) === etag) return aside
  // Not ours to take: put it back, unless a writer created the key meanwhile (then theirs stands).
  await link(aside, target).catch(() => {})
  await rm(aside, { force: true })
  throw new PreconditionFailed(key)
}

/** Publishes `temporary` at `target` only if nothing is there: `link` fails with EEXIST where `rename` would replace. */
async function linkNew(temporary: string, target: string, key: string): Promise<void> {
  try {
    await link(temporary, target)
  } catch (error) {
    if (codeOf(error) === 'EEXIST') throw new PreconditionFailed(key)
    throw error
  } finally {
    await rm(temporary, { force: true })
  }
}

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
    // A conditional put links its file into place (O_EXCL's guarantee), after a claim for `ifMatch`.
    conditionalWrites: true,
    async put(key: string, body: PutBody, { ifNoneMatch, ifMatch }: PutOptions = {}): Promise<PutResult> {
      const target = pathOf(key)
      const temporary = `${target}.${randomBytes(4).toString('hex')}.tmp`
      await mkdir(dirname(target), { recursive: true })
      try {
        await ('file' in body ? copyFile(body.file, temporary) : writeFile(temporary, body))
        if (ifMatch !== undefined) {
          const aside = await claim(target, ifMatch, key)
          await rm(aside, { force: true })
        }
        if (ifNoneMatch || ifMatch !== undefined) await linkNew(temporary, target, key)
        else await rename(temporary, target)
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
        if (key.startsWith(prefix) && !key.endsWith('.tmp')) {
          const info = await stat(path).catch(() => undefined)
          if (!info) continue // deleted since the directory was read
          yield { key, size: info.size, lastModified: info.mtime, etag: etagOf(info) }
        }
      }
    },
    async delete(keys: readonly string[], { ifMatch }: DeleteOptions = {}) {
      if (ifMatch !== undefined) {
        for (const key of keys) await rm(await claim(pathOf(key), ifMatch, key), { force: true })
        return
      }
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
