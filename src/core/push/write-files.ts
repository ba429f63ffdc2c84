import { describeError, PushCacheError } from '../model/errors'
import { createProgressCounter, type ProgressEvent } from '../model/progress'
import type { BuildWrite } from '../store/build-write'
import { forEachLimited } from '../util/concurrency'
import { md5, md5File } from '../util/digest'
import { giveBack, readWhole } from '../util/file-buffers'
import { flatString } from '../util/flat-string'
import type { PlannedUpload } from './plan'
import type { HashedUpload } from './plan-against-store'
import type { PushRun } from './run'

/** File contents held in memory at once across all uploads in flight; larger files stream. */
const BYTES_IN_FLIGHT = 16 * 1024 * 1024

/** Writes the files of one build, and remembers what it wrote. */
export interface FileWriter {
  /** Every file whose write started, in that order: what a failed build takes back. */
  readonly written: PlannedUpload[]
  /** Writes one file (retried), or throws the error that fails the push. */
  put(file: HashedUpload): Promise<void>
  /** Writes `batch` as the phase `phase`, many at once under the byte budget, largest first. */
  putAll(phase: 'added' | 'changed', batch: readonly HashedUpload[]): Promise<void>
}

export function createFileWriter(
  run: PushRun,
  build: BuildWrite,
  total: ProgressEvent['total'],
  onProgress?: (event: ProgressEvent) => void,
  stop?: AbortSignal,
): FileWriter {
  const { store, options, logger, retry } = run
  const written: PlannedUpload[] = []
  /** Bytes of a file the store holds in memory while it writes it. */
  const heldInMemory = (file: PlannedUpload) => store.bufferedBytes?.(file.size) ?? file.size
  const reuseBuffers = store.releasesBodies === true
  const progress = createProgressCounter(total, onProgress)
  const { expiresIn } = build

  async function put(file: HashedUpload): Promise<void> {
    // Uploads under way finish; none starts once the push was told to stop.
    stop?.throwIfAborted()
    build.checkTime()
    written.push(file)
    try {
      // A file the plan did not hash is hashed from the bytes sent where the store would hold them
      // all anyway; else by the store as it reads them (S3's parts), or from a second read after.
      const bytes = file.md5 === undefined && heldInMemory(file) >= file.size ? await readWhole(file.path, file.size, reuseBuffers) : undefined
      try {
        if (bytes) file.md5 = md5(bytes)
        const { etag, md5: sent } = await retry(file.relpath, () =>
          store.put(file.key, bytes ?? { file: file.path, size: file.size }, {
            contentType: file.contentType,
            cacheControl: file.cacheControl,
            expiresIn,
            // Hashed from these very bytes just above; a planned MD5 is left for the store to check the bytes it reads.
            md5: bytes ? file.md5 : undefined,
          }),
        )
        file.md5 ??= sent ?? (await md5File(file.path))
        // Kept to the end, one per file: flat, not the pieces a store joined it from (or the
        // response headers it was sliced from).
        if (etag) file.etag = flatString(etag)
      } finally {
        if (bytes && reuseBuffers) giveBack(bytes)
      }
    } catch (error) {
      throw new PushCacheError(
        'UPLOAD_FAILED',
        `Could not push ${file.relpath} to ${store.display} (key ${file.key}): ${describeError(error)}. No entrypoint and no manifest of build ${options.timestamp} were written.`,
        { cause: error },
      )
    }
    logger.debug(`pushed ${file.key}`)
    if (typeof run.inFlight !== 'number') run.inFlight.completed()
    progress.add(file.relpath, file.size)
  }

  const budget = { limit: BYTES_IN_FLIGHT, cost: heldInMemory }
  return {
    written,
    put,
    async putAll(phase, batch) {
      // Largest first: a big file that started last would finish alone, long after the small ones.
      const largestFirst = [...batch].sort((a, b) => b.size - a.size)
      if (batch.length > 0) await run.timed(phase, () => forEachLimited(largestFirst, run.inFlight, put, budget))
    },
  }
}
