import { PushCacheError } from './errors'

/** What we record of each file; every field is optional so that readers of older manifests cope. */
export interface ManifestEntry {
  size?: number
  contentType?: string
  cacheControl?: string
  /** Hex MD5 of the bytes. */
  md5?: string
  /** Flat stores: the object's version tag when this build wrote or checked it (see `StoreEntry.etag`). */
  etag?: string
  /**
   * Versioned stores: the build whose key holds the bytes, when this build found them unchanged in
   * an older build instead of writing them again. Absent: this build's own key.
   */
  version?: number
}

/**
 * `manifests/<app>/<ts>` (S3, local) and `manifest:<app>:<ts>` (Valkey). valpop reads `files` and
 * `timestamp` and ignores the rest (Go's json), so fields may be added but these two never change.
 */
export interface Manifest {
  /**
   * Paths relative to the output root, `/`-separated: every file of the build, written by it or
   * found unchanged in the store (then `entries[path].version` names the key on versioned stores).
   */
  files: string[]
  /** The build's timestamp in seconds. */
  timestamp: number
  /** The container image the build shipped in (valpop's duplicate skip compares it). */
  image?: string
  /** Which files were published last. */
  entrypoints?: string[]
  /** `unplugin-push-cache@<version>` */
  generator?: string
  /** Per-file details, keyed by relpath. */
  entries?: Record<string, ManifestEntry>
  [extra: string]: unknown
}

/**
 * Reads both formats valpop has written: the object and the older bare array of relpaths. The
 * timestamp of a bare array (or an object without one) comes from the key.
 */
export function parseManifest(text: string, key: string, timestampFromKey: number): Manifest {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw unreadable(key, 'it is not JSON', error)
  }
  const object = Array.isArray(value) ? { files: value } : value
  if (!object || typeof object !== 'object') throw unreadable(key, 'it is neither an object nor an array')
  const manifest = object as Record<string, unknown>
  if (!Array.isArray(manifest.files) || !manifest.files.every((file) => typeof file === 'string')) throw unreadable(key, '`files` is not a list of paths')
  const timestamp = typeof manifest.timestamp === 'number' ? manifest.timestamp : timestampFromKey
  return { ...manifest, files: manifest.files as string[], timestamp }
}

export function serializeManifest(manifest: Manifest): string {
  return `${JSON.stringify(manifest)}\n`
}

function unreadable(key: string, why: string, cause?: unknown): PushCacheError {
  return new PushCacheError('MANIFEST_UNREADABLE', `Manifest ${key} cannot be read: ${why}. Nothing was pruned; fix or delete that object.`, { cause })
}
