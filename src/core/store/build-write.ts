import { describeError, PushCacheError } from '../model/errors'
import type { Logger } from '../util/logger'
import { newestManifestTimestamp } from './builds'
import type { StoredFile } from './held-files'
import { layoutOf } from './layout'
import { pendingKey, writePending } from './pending'
import { PreconditionFailed, type Store } from './store'

/** What a pending record names: the build's files and the MD5 of each entrypoint it writes, by relpath. */
export interface PendingFiles {
  files: readonly string[]
  entrypoints: Record<string, string>
}

/** Runs one request with the push's retries; `what` names it in the retry's log line. */
export type Retry = <T>(what: string, attempt: () => Promise<T>) => Promise<T>

/** Whether a build of `app` newer than `timestamp` has a manifest: one listing, no reads. */
const newerBuildExists = async (store: Store, app: string, timestamp: number, retries: number) =>
  ((await newestManifestTimestamp(store, app, retries)) ?? -1) > timestamp

/** For a versioned store that does not say how long a build may take. */
const DEFAULT_PENDING_EXPIRY = { seconds: 3600, option: 'pendingExpiry' }

/**
 * How a push writes one build where flat and versioned stores differ: populate asks this and never
 * which family the store is. Versioned stores follow valpop: a lock key marks the build in
 * progress, its keys expire unless the build completes (then they are persisted and the lock
 * goes), and a failed build deletes what it wrote. Flat stores share keys between builds, so an
 * older build must not replace what a newer one serves; every other step is a no-op there.
 */
export interface BuildWrite {
  /** Seconds after which a key the build writes expires unless persisted; undefined: never. */
  readonly expiresIn?: number
  /** Whether stored objects keep their headers, so that other headers make a file changed. */
  readonly comparesHeaders: boolean
  /**
   * Marks the build as in progress, before anything of it is written. A build that writes no file
   * but its manifest (the same build again) needs no mark: its manifest lands whole, in one write.
   */
  begin(writesFiles: boolean): Promise<void>
  /** Throws once the build took longer than its keys live: call before each write. */
  checkTime(): void
  /**
   * Whether a newer build already serves the keys this one would replace; `listed`, what a listing
   * made under the writer lock told already (the store is asked when it is left out).
   */
  superseded(listed?: boolean): Promise<boolean>
  /** Makes the keys of `files` outlive their expiry; `what` names the step in retry logs. */
  persist(files: readonly { key: string }[], what: string): Promise<void>
  /**
   * What the manifest records of where a file's bytes are, from what the push learnt of the key
   * that holds them (the tag of the key it wrote or listed, the older build whose key it reuses):
   * the store's tag, or that build.
   */
  recordOf(where: Pick<StoredFile, 'etag' | 'version'>): { version?: number; etag?: string }
  /**
   * Right before the entrypoints: flat stores leave a pending record of the build (see
   * `pending.ts`), so that a served entrypoint is never without a record of its files. A no-op
   * when {@link recordPendingEarly} wrote it.
   */
  recordPending(record: PendingFiles): Promise<void>
  /**
   * The pending record beside the build's first writes, a round trip saved: only when the store
   * holds none at this timestamp (a conditional create). One there may be an earlier attempt's,
   * whose entrypoint may be served and need it: {@link recordPending} replaces it, as late as ever.
   */
  recordPendingEarly(record: PendingFiles): Promise<void>
  /** What a failure leaves served, when it may leave an entrypoint without a manifest; said in its message. */
  pendingNote(): string | undefined
  /**
   * The manifest is written: the build is no longer in progress, and `releaseLock` releases the
   * writer lock, beside the last tidying up where that is safe. Never throws: the build is in the
   * store, and a failure to tidy up must not make the push take it back.
   */
  complete(logger: Logger, releaseLock: () => Promise<void>): Promise<void>
  /** Best effort after a failure: removes what the build wrote and its lock. */
  abandon(files: readonly { key: string }[], logger: Logger): Promise<void>
}

interface BuildWriteInput {
  store: Store
  app: string
  timestamp: number
  retries: number
  dryRun: boolean
  retry: Retry
  now: () => number
}

/** The {@link BuildWrite} of `store`'s layout; a versioned build's time runs from this call. */
export function buildWriteFor(input: BuildWriteInput): BuildWrite {
  const layout = layoutOf(input.store)
  return layout.locks ? versionedBuildWrite(input, layout.locks.key(input.app, input.timestamp)) : flatBuildWrite(input)
}

function flatBuildWrite({ store, app, timestamp, retries, retry }: BuildWriteInput): BuildWrite {
  const nothing = async () => {}
  const pending = pendingKey(store, app, timestamp)
  /** The entrypoints the record in place names, once this push wrote it. */
  let recorded: string[] | undefined
  /** Written early where there was none: a push that fails before its entrypoints takes it back. */
  let created = false
  let publishing = false
  const write = (record: PendingFiles, ifNoneMatch?: '*') =>
    retry(pending, () => writePending(store, app, { timestamp, files: [...record.files], entrypoints: record.entrypoints }, ifNoneMatch))
  return {
    comparesHeaders: true,
    begin: nothing,
    checkTime() {},
    // A flat key holds one build's bytes: an older build pushed after a newer one (a re-run CI job)
    // must not replace what the newer one serves.
    superseded: async (listed) => listed ?? (await newerBuildExists(store, app, timestamp, retries)),
    persist: nothing,
    recordOf: ({ etag }) => ({ etag }),
    async recordPending(record) {
      publishing = true
      if (!recorded) await write(record)
      recorded = Object.keys(record.entrypoints)
    },
    async recordPendingEarly(record) {
      if (!store.conditionalWrites) return
      try {
        await write(record, '*')
        recorded = Object.keys(record.entrypoints)
        created = true
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error
      }
    },
    pendingNote: () =>
      publishing && recorded
        ? `${recorded.join(', ')} of build ${timestamp} may be served without its manifest; its files are kept from prunes by ${pending} in ${store.display}. Push build ${timestamp} again (the same files and timestamp) to complete it.`
        : undefined,
    async complete(_logger, releaseLock) {
      // Only the record this push wrote: a push that wrote no entrypoint spends no request here.
      // Best effort: a prune removes a pending record once a manifest or a newer record serves its
      // entrypoints (one left by a failed push of this build, too). So it goes beside the lock's
      // release: a prune that takes the lock before the record is gone keeps what the record names,
      // which the manifest names too, and removes the record or leaves it to the next prune.
      const removal = recorded ? store.delete([pending]).catch(() => {}) : undefined
      recorded = undefined
      await Promise.all([removal, releaseLock()])
    },
    // The pending record stays once the entrypoints may be served (a prune removes it once they are not).
    async abandon() {
      if (created && !publishing) await store.delete([pending]).catch(() => {})
    },
  }
}

function versionedBuildWrite({ store, timestamp, dryRun, retry, now }: BuildWriteInput, lockKey: string): BuildWrite {
  const { seconds: expiresIn, option } = store.pendingExpiry ?? DEFAULT_PENDING_EXPIRY
  // A crashed build's keys must expire before its lock, or readers would take them for a build:
  // the lock lives twice the expiry, and data keys are written only during the first.
  const lockedAt = now()
  let completed = false
  // No file to write: no lock, and the manifest is written permanent at once.
  let bare = false
  return {
    get expiresIn() {
      return bare ? undefined : expiresIn
    },
    // A value holds bytes only: headers ride in the manifest.
    comparesHeaders: false,
    async begin(writesFiles) {
      bare = !writesFiles
      if (!dryRun && !bare) await retry(lockKey, () => store.put(lockKey, Buffer.from('in-progress'), { expiresIn: 2 * expiresIn }))
    },
    checkTime() {
      if (now() - lockedAt > expiresIn * 1000)
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `Build ${timestamp} took longer than \`${option}\` (${expiresIn} s) to write; it was abandoned. Raise \`${option}\` above the time a push takes.`,
        )
    },
    // Readers take the newest build anyway: an older one replaces nothing.
    superseded: async () => false,
    async persist(files, what) {
      if (bare || files.length === 0) return
      const lost = await retry(what, async () => (await store.persist?.(files.map((file) => file.key))) ?? [])
      if (lost.length > 0)
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `${lost.length} keys of build ${timestamp} expired before the build completed (first: ${lost[0]}). Raise \`${option}\` above the time a push takes.`,
        )
    },
    recordOf: ({ version }) => (version !== undefined ? { version } : {}),
    // A versioned entrypoint is served only through its build's manifest.
    recordPending: async () => {},
    recordPendingEarly: async () => {},
    pendingNote: () => undefined,
    // The build lock goes before the writer lock: a prune that took that would read the build as in progress.
    async complete(logger, releaseLock) {
      completed = true
      if (!bare)
        try {
          await retry(lockKey, () => store.delete([lockKey]))
        } catch (error) {
          logger.warn(
            `build ${timestamp} is complete, but its lock ${lockKey} could not be removed (${describeError(error)}): readers skip the build until the lock expires (${2 * expiresIn} s at most), or delete it by hand.`,
          )
        }
      await releaseLock()
    },
    // Only keys this build wrote go; they expire on their own if this fails too.
    async abandon(files, logger) {
      if (dryRun || completed) return
      try {
        await store.delete(files.map((file) => file.key))
        if (!bare) await store.delete([lockKey])
      } catch (error) {
        logger.warn(`could not remove the partial build (its keys expire on their own): ${describeError(error)}`)
      }
    },
  }
}
