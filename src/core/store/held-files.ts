import { entryOf } from '../model/manifest'
import type { HeldFile } from '../model/sync-plan'
import { isMd5 } from '../util/digest'
import { listEntriesSplit, type StoredBuild } from './builds'
import { layoutOf } from './layout'
import type { Store } from './store'

/** A file the store serves now, with what is known of its bytes (and, on flat stores, headers). */
export interface StoredFile extends HeldFile {
  key: string
  /** Flat stores: the object's version tag in the listing. */
  etag?: string
  /** Versioned stores: the build whose key holds the bytes. */
  version?: number
}

/** What a flat store lists of one data key: what the plan compares (100,000 listed dates of no use would stay to the end). */
export interface ListedObject {
  key: string
  size?: number
  etag?: string
}

/**
 * The data keys of `app` on a flat store, listed in ranges cut at the keys of `relpaths` (the
 * build's: see {@link listEntriesSplit}), not retried; none on a versioned one, whose newest
 * manifest names its keys.
 */
export async function listHeld(store: Store, app: string, relpaths: readonly string[]): Promise<ListedObject[]> {
  const layout = layoutOf(store)
  if (layout.keysPerBuild) return []
  const known = relpaths.map((relpath) => layout.dataKey(app, 0, relpath))
  return (await listEntriesSplit(store, layout.dataPrefix(app), known, 0)).map(({ key, size, etag }) => ({ key, size, etag }))
}

/**
 * What the store holds for `app`, by relpath: on flat stores the listing of the data prefix (see
 * {@link listHeld}) with the newest manifest; on versioned stores the newest complete build's
 * manifest. Without a readable newest manifest nothing is vouched for, so everything is written again.
 *
 * An MD5 is trusted only when the store vouches for it: a listed ETag that is a plain MD5, or a
 * listed tag equal to the one the newest manifest recorded with its MD5 (multipart and SSE-KMS
 * ETags, local files). Versioned keys are never rewritten, so their manifest's MD5 holds for as
 * long as the key exists: callers check that with `exists`.
 */
export function heldFiles(store: Store, app: string, listing: readonly ListedObject[], newest: StoredBuild | undefined): Map<string, StoredFile> {
  const files = new Map<string, StoredFile>()
  const layout = layoutOf(store)
  if (layout.keysPerBuild) {
    for (const relpath of newest?.files ?? []) {
      const entry = entryOf(newest?.manifest, relpath)
      const version = entry?.version ?? newest!.timestamp
      files.set(relpath, { key: layout.dataKey(app, version, relpath), version, size: entry?.size, md5: entry?.md5 })
    }
    return files
  }
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
