import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { columnsBuilder, type Manifest, manifestPieces, serializeManifest } from '../model/manifest'
import { GENERATOR } from '../model/version'
import type { BuildWrite } from '../store/build-write'
import type { PutBody } from '../store/store'
import type { HashedUpload } from './plan-against-store'

export interface ManifestInput {
  timestamp: number
  image?: string
  /** Every file of the build, written now or found unchanged, each with where its bytes are (its tag, or the build whose key it reuses). */
  files: readonly HashedUpload[]
  entrypoints: string[]
  recordOf: BuildWrite['recordOf']
}

/**
 * The build's manifest: what readers pop and prune by. Its details go straight into columns, no
 * object per file; the files are sorted as indexes, not copied. Where each file's bytes are comes
 * with the file, not from what the store held: the plan's listing and the newest manifest are
 * freed by now (~10 MB for 100,000 files).
 */
export function buildManifest({ timestamp, image, files, entrypoints, recordOf }: ManifestInput): Manifest {
  // Files left out by include/exclude are not in it.
  const order = Uint32Array.from(files.keys()).sort((a, b) => (files[a]!.relpath < files[b]!.relpath ? -1 : files[a]!.relpath > files[b]!.relpath ? 1 : 0))
  const details = columnsBuilder(files.length)
  const relpaths = new Array<string>(files.length)
  for (const [position, index] of order.entries()) {
    const file = files[index]!
    relpaths[position] = file.relpath
    details.add({ size: file.size, contentType: file.contentType, cacheControl: file.cacheControl, md5: file.md5, ...recordOf(file) })
  }
  return {
    files: relpaths,
    timestamp,
    ...(image ? { image } : {}),
    entrypoints,
    generator: GENERATOR,
    details: details.columns(),
  }
}

/** From this many files on, a manifest (~100 B a file) goes to the store from a temporary file, not from memory. */
const MANIFEST_FILE_FROM = 10_000

/**
 * Runs `put` with the manifest's body. A large one is written to a temporary file, a chunk of text
 * at a time, and put from there (removed after): a 100,000-file build's ~10 MB in one buffer was
 * the push's peak of memory. The local store copies it in the kernel; S3 reads it as any file.
 */
export async function withManifestBody<T>(manifest: Manifest, put: (body: PutBody) => Promise<T>): Promise<T> {
  if (manifest.files.length < MANIFEST_FILE_FROM) return put(serializeManifest(manifest))
  // No writable temporary directory (a read-only container, a full disk): memory, as for a small build.
  const directory = await mkdtemp(join(tmpdir(), 'push-cache-')).catch(() => undefined)
  if (!directory) return put(serializeManifest(manifest))
  try {
    const file = join(directory, 'manifest.json')
    const size = await writeManifestFile(manifest, file).catch(() => undefined)
    return await put(size === undefined ? serializeManifest(manifest) : { file, size })
  } finally {
    await rm(directory, { recursive: true, force: true })
  }
}

/** Writes the manifest into `file`, a piece of text at a time; resolves to its size in bytes. */
async function writeManifestFile(manifest: Manifest, file: string): Promise<number> {
  const out = createWriteStream(file)
  await pipeline(Readable.from(manifestPieces(manifest)), out)
  return out.bytesWritten
}
