import { randomBytes } from 'node:crypto'
import type { Stats } from 'node:fs'
import { copyFile, link, mkdir, open, opendir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { assertSafeRelpath } from '../core/model/paths'
import { type DeleteOptions, PreconditionFailed, type PutBody, type PutOptions, type PutResult, type Store, type StoreEntry } from '../core/store/store'
import { isTransient } from '../core/util/concurrency'
import { flatString } from '../core/util/flat-string'

const DRIVER_NAME = 'local'

/**
 * Every write renames a new file into place: a new inode, so the tag changes even within one mtime
 * tick. Flat: a listing of 100,000 files keeps one per file, and joined pieces held ~140 B more each.
 */
const etagOf = (info: Stats) => flatString(`${info.ino.toString(16)}-${info.mtimeMs.toString(16)}-${info.size.toString(16)}`)

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException).code

/** A compare-and-swap guard older than this was left by a process that died holding it. */
const STALE_GUARD_MS = 10_000
const GUARD_TRIES = 500

/**
 * Runs `work` while holding `<target>.guard.tmp`, created with O_EXCL: the local store's
 * compare-and-swap is compare, then rename over the target (never absent meanwhile, so a create
 * with `ifNoneMatch` cannot slip in), and no two of them interleave. Bounded: a guard held for
 * longer than a few seconds is stale.
 */
async function withGuard<T>(target: string, work: () => Promise<T>): Promise<T> {
  const guard = `${target}.guard.tmp`
  for (let attempt = 1; ; attempt++) {
    try {
      await writeFile(guard, '', { flag: 'wx' })
      break
    } catch (error) {
      if (codeOf(error) !== 'EEXIST' || attempt === GUARD_TRIES) throw error
      const info = await stat(guard).catch(() => undefined)
      if (info && Date.now() - info.mtimeMs > STALE_GUARD_MS) await rm(guard, { force: true })
      else await sleep(5)
    }
  }
  try {
    return await work()
  } finally {
    await rm(guard, { force: true })
  }
}

/** Throws {@link PreconditionFailed} unless `target` exists with the tag `etag`. */
async function expectTag(target: string, etag: string, key: string): Promise<void> {
  const info = await stat(target).catch(() => undefined)
  if (!info || etagOf(info) !== etag) throw new PreconditionFailed(key)
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
 * Where writes are made before they are renamed into place: beside the keys' own directories
 * (`data/`, `manifests/`), so any file name a build has (up to 255 bytes, `*.tmp` included) is a
 * key, and on the same file system, so the rename is atomic.
 */
const TEMPORARY_DIR = '.writing'

/** Directory entries read at once while listing: few system calls, little held. */
const DIRENTS_PER_READ = 256

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
    // `ifNoneMatch` links its file into place (O_EXCL's guarantee); `ifMatch` compares and renames under a guard.
    conditionalWrites: true,
    async put(key: string, body: PutBody, { ifNoneMatch, ifMatch }: PutOptions = {}): Promise<PutResult> {
      const target = pathOf(key)
      const temporary = join(root, TEMPORARY_DIR, randomBytes(8).toString('hex'))
      await Promise.all([mkdir(dirname(target), { recursive: true }), mkdir(dirname(temporary), { recursive: true })])
      try {
        await ('file' in body ? copyFile(body.file, temporary) : writeFile(temporary, body))
        if (ifMatch !== undefined)
          await withGuard(target, async () => {
            await expectTag(target, ifMatch, key)
            await rename(temporary, target)
          })
        else if (ifNoneMatch) await linkNew(temporary, target, key)
        else await rename(temporary, target)
        return { etag: etagOf(await stat(target)) }
      } catch (error) {
        await rm(temporary, { force: true })
        throw error
      }
    },
    async read(key: string): Promise<Readable | undefined> {
      // Opened now, not when the stream is first read: a key deleted in between reads as absent, not as an error.
      const handle = await open(pathOf(key)).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' || error.code === 'EISDIR') return undefined
        throw error
      })
      if (!handle) return undefined
      if ((await handle.stat()).isFile()) return handle.createReadStream()
      await handle.close()
      return undefined
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
    async delete(keys: readonly string[], { ifMatch }: DeleteOptions = {}) {
      if (ifMatch !== undefined) {
        for (const key of keys)
          await withGuard(pathOf(key), async () => {
            await expectTag(pathOf(key), ifMatch, key)
            await rm(pathOf(key), { force: true })
          })
        return
      }
      await Promise.all(keys.map((key) => rm(pathOf(key), { force: true })))
    },
    async close() {},
  }
}

/**
 * Every file below `directory`, read a batch of entries at a time: `readdir` held a Dirent and a
 * name per entry of a directory for as long as its files were listed (a 100,000-file build's data
 * directory: ~9 MB, through the whole listing).
 */
async function* walk(directory: string): AsyncGenerator<string> {
  const entries = await opendir(directory, { bufferSize: DIRENTS_PER_READ }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined
    throw error
  })
  if (!entries) return
  for await (const entry of entries) {
    const path = join(directory, entry.name)
    if (entry.isDirectory()) yield* walk(path)
    else if (entry.isFile()) yield path
  }
}
