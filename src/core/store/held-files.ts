import { PushCacheError } from '../model/errors'
import { entryOf } from '../model/manifest'
import type { HeldFile } from '../model/sync-plan'
import { isMd5 } from '../util/digest'
import { newestBuild, type StoredBuild } from './builds'
import { layoutOf } from './layout'
import type { Store } from './store'

/** For reads that can do without the newest manifest: an unreadable one counts as none. */
export const unlessUnreadable = (error: unknown): undefined => {
  if (error instanceof PushCacheError && error.code === 'MANIFEST_UNREADABLE') return undefined
  throw error
}

/** A file the store serves now, with what is known of its bytes (and, on flat stores, headers). */
export interface StoredFile extends HeldFile {
  key: string
  /** Flat stores: the object's version tag in the listing. */
  etag?: string
  /** Versioned stores: the build whose key holds the bytes. */
  version?: number
}

/**
 * What the store holds for `app`, by relpath, in a few requests: on flat stores one listing of the
 * data prefix plus the newest manifest; on versioned stores the newest complete build's manifest.
 *
 * An MD5 is trusted only when the store vouches for it: a listed ETag that is a plain MD5, or a
 * listed tag equal to the one the newest manifest recorded with its MD5 (multipart and SSE-KMS
 * ETags, local files). Versioned keys are never rewritten, so their manifest's MD5 holds for as
 * long as the key exists: callers check that with `exists`.
 */
export async function readStoreState(store: Store, app: string, retries: number, newestRead?: StoredBuild | null): Promise<Map<string, StoredFile>> {
  const files = new Map<string, StoredFile>()
  // A manifest never changes once written: one the caller read before is as good.
  // Without a readable newest manifest nothing is vouched for, so everything is written again.
  const readNewest = async () => (newestRead === undefined ? newestBuild(store, app, retries).catch(unlessUnreadable) : (newestRead ?? undefined))
  const layout = layoutOf(store)
  if (layout.keysPerBuild) {
    const newest = await readNewest()
    for (const relpath of newest?.files ?? []) {
      const entry = entryOf(newest?.manifest, relpath)
      const version = entry?.version ?? newest!.timestamp
      files.set(relpath, { key: layout.dataKey(app, version, relpath), version, size: entry?.size, md5: entry?.md5 })
    }
    return files
  }
  const listing: { key: string; size?: number; etag?: string }[] = []
  const [newest] = await Promise.all([
    readNewest(),
    (async () => {
      // Only what is compared: 100,000 listed dates and sizes of no use would stay until the end.
      for await (const { key, size, etag } of store.list(layout.dataPrefix(app))) listing.push({ key, size, etag })
    })(),
  ])
  for (const { key, size, etag } of listing) {
    const relpath = layout.parseDataKey(app, key)?.relpath
    if (relpath === undefined) continue
    const entry = entryOf(newest?.manifest, relpath)
    const vouched = entry !== undefined && etag !== undefined && (entry.etag === etag || (isMd5(etag) && entry.md5 === etag.toLowerCase()))
    const md5 = vouched ? entry.md5 : isMd5(etag) ? etag.toLowerCase() : undefined
    files.set(relpath, { key, size, etag, md5, ...(vouched ? { contentType: entry.contentType, cacheControl: entry.cacheControl } : {}) })
  }
  return files
}
