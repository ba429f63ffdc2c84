import { entryAt, indexIn, inOrderFinder } from '../model/manifest'
import type { HeldFile } from '../model/sync-plan'
import { isMd5 } from '../util/digest'
import { type StoredBuild, visitEntriesSplit } from './builds'
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

/** What the store holds, by relpath. A Map of {@link StoredFile} is one too. */
export interface HeldFiles {
  get(relpath: string): StoredFile | undefined
}

/**
 * What a flat store lists of the files of a build, as columns parallel to `relpaths` (the build's):
 * whether each is listed, with which size and version tag (what the plan compares). Other listed
 * keys are of no use to the plan; an object and a key per listed file held ~180 B each (18 MB for
 * 100,000 files), with dates of no use.
 */
export interface Listing {
  relpaths: readonly string[]
  listed: Uint8Array
  sizes: (number | undefined)[]
  etags: (string | undefined)[]
}

/**
 * What a flat store lists of `relpaths` under the data prefix of `app`; nothing on a versioned one,
 * whose newest manifest names its keys. `onListed` hears the index of each as it is listed.
 */
export async function listHeld(store: Store, app: string, relpaths: readonly string[], onListed?: (index: number) => void): Promise<Listing> {
  const layout = layoutOf(store)
  const listing: Listing = { relpaths, listed: new Uint8Array(relpaths.length), sizes: new Array(relpaths.length), etags: new Array(relpaths.length) }
  if (layout.keysPerBuild) return listing
  // Listed in ranges at once, cut at the build's keys (a flat key is the prefix and the relpath);
  // not retried here, the caller retries it whole.
  const find = inOrderFinder(relpaths)
  await visitEntriesSplit(store, layout.dataPrefix(app), relpaths, 0, ({ key, size, etag }) => {
    const relpath = layout.parseDataKey(app, key)?.relpath
    const index = relpath === undefined ? -1 : find(relpath)
    if (index === -1) return
    listing.listed[index] = 1
    listing.sizes[index] = size
    listing.etags[index] = etag
    onListed?.(index)
  })
  return listing
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
 *
 * The files stay in the columns they were read in (the listing, the manifest's); a file's
 * {@link StoredFile} is made when asked for. An object per file held ~340 B (34 MB for 100,000).
 */
export function heldFiles(store: Store, app: string, listing: Listing, newest: StoredBuild | undefined): HeldFiles {
  const layout = layoutOf(store)
  const details = newest?.manifest?.details
  if (layout.keysPerBuild) {
    const files = newest?.files ?? []
    return {
      get(relpath) {
        const index = indexIn(files, relpath)
        if (index === -1) return undefined
        const entry = details === undefined ? undefined : entryAt(details, index)
        const version = entry?.version ?? newest!.timestamp
        return { key: layout.dataKey(app, version, relpath), version, size: entry?.size, md5: entry?.md5 }
      },
    }
  }
  const vouchedBy = vouchedIndexes(listing, newest)
  const find = inOrderFinder(listing.relpaths)
  return {
    get(relpath) {
      const index = find(relpath)
      if (index === -1 || listing.listed[index] === 0) return undefined
      const size = listing.sizes[index]
      const etag = listing.etags[index]
      const key = layout.dataKey(app, 0, relpath)
      const vouched = vouchedBy[index]!
      if (vouched === -1 || details === undefined) return { key, size, etag, md5: isMd5(etag) ? etag.toLowerCase() : undefined }
      const { md5, contentType, cacheControl } = entryAt(details, vouched)
      return { key, size, etag, md5, contentType, cacheControl }
    },
  }
}

/** For each listed file, the index in the newest manifest of the entry that vouches for its tag, or -1. */
function vouchedIndexes({ relpaths, listed, etags }: Listing, newest: StoredBuild | undefined): Int32Array {
  const vouchedBy = new Int32Array(relpaths.length).fill(-1)
  const manifest = newest?.manifest
  const details = manifest?.details
  if (manifest === undefined || details === undefined) return vouchedBy
  const find = inOrderFinder(manifest.files)
  for (const [at, relpath] of relpaths.entries()) {
    const etag = etags[at]
    const index = etag === undefined || listed[at] === 0 ? -1 : find(relpath)
    if (index !== -1 && (details.etag?.[index] === etag || (isMd5(etag) && details.md5[index] === etag.toLowerCase()))) {
      vouchedBy[at] = index
      // Equal strings held once: the manifest's copies were ~10 MB for 100,000 files, to the push's end.
      manifest.files[index] = relpath
      if (etag !== undefined && details.etag?.[index] === etag) details.etag[index] = etag
    }
  }
  return vouchedBy
}
