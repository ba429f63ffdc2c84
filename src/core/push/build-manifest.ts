import { columnsBuilder, type Manifest } from '../model/manifest'
import type { SyncPlan } from '../model/sync-plan'
import { GENERATOR } from '../model/version'
import type { BuildWrite } from '../store/build-write'
import type { HeldFiles } from '../store/held-files'
import type { HashedUpload } from './plan-against-store'

export interface ManifestInput {
  timestamp: number
  image?: string
  /** Every file of the build, written now or found unchanged. */
  files: readonly HashedUpload[]
  entrypoints: string[]
  sync: SyncPlan<HashedUpload>
  /** What the store held, by relpath: where an unchanged file's bytes are. */
  held: HeldFiles
  recordOf: BuildWrite['recordOf']
}

const byRelpath = (a: HashedUpload, b: HashedUpload) => (a.relpath < b.relpath ? -1 : a.relpath > b.relpath ? 1 : 0)

/** The build's manifest: what readers pop and prune by. Its details go straight into columns, no object per file. */
export function buildManifest({ timestamp, image, files, entrypoints, sync, held, recordOf }: ManifestInput): Manifest {
  const unchanged = new Set(sync.unchanged)
  // Files left out by include/exclude are not in it.
  const sorted = [...files].sort(byRelpath)
  const details = columnsBuilder()
  for (const file of sorted) {
    const record = recordOf(file.etag, unchanged.has(file) ? held.get(file.relpath) : undefined)
    details.add({ size: file.size, contentType: file.contentType, cacheControl: file.cacheControl, md5: file.md5, ...record })
  }
  return {
    files: sorted.map((file) => file.relpath),
    timestamp,
    ...(image ? { image } : {}),
    entrypoints,
    generator: GENERATOR,
    details: details.columns(),
  }
}
