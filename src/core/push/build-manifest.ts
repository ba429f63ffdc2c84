import type { Manifest, ManifestEntry } from '../model/manifest'
import type { SyncPlan } from '../model/sync-plan'
import { GENERATOR } from '../model/version'
import type { BuildWrite } from '../store/build-write'
import type { StoredFile } from '../store/held-files'
import type { HashedUpload } from './plan-against-store'

export interface ManifestInput {
  timestamp: number
  image?: string
  /** Every file of the build, written now or found unchanged. */
  files: readonly HashedUpload[]
  entrypoints: string[]
  sync: SyncPlan<HashedUpload>
  /** What the store held, by relpath: where an unchanged file's bytes are. */
  held: ReadonlyMap<string, StoredFile>
  /** The tags the store gave the files written now, by relpath. */
  etags: ReadonlyMap<string, string>
  recordOf: BuildWrite['recordOf']
}

/** The build's manifest: what readers pop and prune by. */
export function buildManifest({ timestamp, image, files, entrypoints, sync, held, etags, recordOf }: ManifestInput): Manifest {
  const unchanged = new Set(sync.unchanged)
  const entry = (file: HashedUpload): ManifestEntry => ({
    size: file.size,
    contentType: file.contentType,
    cacheControl: file.cacheControl,
    md5: file.md5,
    ...recordOf(etags.get(file.relpath), unchanged.has(file) ? held.get(file.relpath) : undefined),
  })
  return {
    // Files left out by include/exclude are not in it.
    files: files.map((file) => file.relpath).sort(),
    timestamp,
    ...(image ? { image } : {}),
    entrypoints,
    generator: GENERATOR,
    entries: Object.fromEntries([...sync.unchanged, ...sync.added, ...sync.changed].map((file) => [file.relpath, entry(file)])),
  }
}
