import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { describeError, PushCacheError } from '../model/errors'
import { createBackoff, pause } from '../util/backoff'
import { withRetry } from '../util/concurrency'
import { type Logger, silentLogger } from '../util/logger'
import { readAll } from './builds'
import { layoutOf } from './layout'
import { PreconditionFailed, type Store } from './store'

/**
 * One writer per app at a time: a push holds the app's writer lock from its plan to its manifest,
 * a prune from reading the builds to its last delete. So no push reads the store while another
 * writes it (the "superseded" check and the plan are no longer races), and no prune deletes while a
 * push writes.
 *
 * The lock is one key (`locks/<app>/writer`, `lease:<app>:writer`), created only if absent and
 * replaced only by whoever holds what it was (the store's conditional writes), with an owner and an
 * expiry in its body. Its holder renews it in the background and confirms it before each step that
 * could do harm (entrypoints, manifest, deletes): a writer that was too slow and lost it stops
 * there. A lock whose expiry has passed by more than the clock margin belongs to a writer that
 * died: the next one takes it over, again by compare-and-swap. A writer that died relies on
 * nothing once its lock is gone: what it may have left served is kept by its pending record.
 * So the lock is all a push and a prune need of each other (issue 16 (e): the leases are gone).
 */
export interface WriterLockTiming {
  /** A lock not renewed for this long is dead. */
  seconds: number
  /** How long a second writer waits for the lock before it fails naming the holder. */
  waitMs: number
}

const DEFAULT_WRITER_LOCK: WriterLockTiming = { seconds: 120, waitMs: 10 * 60_000 }
/** How far the clocks of two machines may disagree: a lock is taken over only this long after its expiry. */
const CLOCK_MARGIN_MS = 30_000
/**
 * A store without conditional writes (an S3-compatible server that ignores `If-None-Match`) is
 * read back this long after the lock was written: of two writers that wrote it at once, the one
 * whose write landed last sees its own and goes on, the other backs off. Best effort, said in the README.
 */
const READ_BACK_AFTER_MS = 250

export interface WriterLock {
  /** Renews the lock, or throws if another writer took it: call right before `step`. */
  confirm(step: string): Promise<void>
  /** Best effort: a lock left behind expires. Once: a second call waits for the first. */
  release(): Promise<void>
}

interface LockBody {
  owner: string
  /** Milliseconds since the epoch, by the holder's clock. */
  expiresAt: number
}

export interface WriterLockInput {
  store: Store
  app: string
  /** `push` or `prune`: what the lock holds, in messages. */
  what: 'push' | 'prune'
  retries: number
  timing?: WriterLockTiming
  logger?: Logger
  now?: () => number
}

const writerLockKey = (store: Store, app: string) => `${layoutOf(store).leasePrefix(app)}writer`

function parseBody(text: string): LockBody | undefined {
  try {
    const body = JSON.parse(text) as Partial<LockBody>
    return typeof body.owner === 'string' && typeof body.expiresAt === 'number' ? { owner: body.owner, expiresAt: body.expiresAt } : undefined
  } catch {
    return undefined
  }
}

/** Takes the writer lock of `app`, waiting (bounded) while another writer holds it. */
export async function takeWriterLock({
  store,
  app,
  what,
  retries,
  timing = DEFAULT_WRITER_LOCK,
  logger = silentLogger,
  now = Date.now,
}: WriterLockInput): Promise<WriterLock> {
  const key = writerLockKey(store, app)
  const owner = `${what} on ${hostname()} (pid ${process.pid}, ${randomBytes(4).toString('hex')})`
  const retry = <T>(attempt: () => Promise<T>) =>
    withRetry(attempt, {
      retries,
      isTransient: store.isTransient,
      onRetry: (error, count) => logger.warn(`retrying the writer lock ${key} (${count}/${retries}): ${describeError(error)}`),
    })
  const bodyNow = () => Buffer.from(JSON.stringify({ owner, expiresAt: now() + timing.seconds * 1000 } satisfies LockBody))
  const putOptions = { contentType: 'application/json', expiresIn: timing.seconds }

  /** The lock as the store holds it, with the tag a compare-and-swap names (when the store lists one). */
  async function current(): Promise<(LockBody & { etag?: string }) | undefined> {
    const [stream, listed] = await Promise.all([retry(() => store.read(key)), retry(() => listTag(store, key))])
    if (!stream) return undefined
    const text = (await readAll(stream, 64 * 1024)).toString('utf8')
    // An unreadable lock is a writer's all the same: it is taken over only once its key is old.
    return { ...(parseBody(text) ?? { owner: 'an unknown writer', expiresAt: (listed?.lastModified ?? now()) + timing.seconds * 1000 }), etag: listed?.etag }
  }

  /** One attempt: the new lock's tag (empty when the store gives none), or the holder that keeps it. */
  async function attempt(): Promise<{ etag: string } | { holder: LockBody }> {
    if (!store.conditionalWrites) return attemptByReadBack()
    try {
      return { etag: (await retry(() => store.put(key, bodyNow(), { ...putOptions, ifNoneMatch: '*' }))).etag ?? '' }
    } catch (error) {
      if (!(error instanceof PreconditionFailed)) throw error
    }
    const held = await current()
    if (!held) return { holder: { owner: 'a writer that just left', expiresAt: now() } }
    // Our own create, landed though its answer was lost and the retry refused.
    if (held.owner === owner) return { etag: held.etag ?? '' }
    if (held.etag === undefined || held.expiresAt + CLOCK_MARGIN_MS > now()) return { holder: held }
    try {
      const { etag } = await retry(() => store.put(key, bodyNow(), { ...putOptions, ifMatch: held.etag }))
      logger.warn(`took over the writer lock of ${app} from ${held.owner}, which expired at ${new Date(held.expiresAt).toISOString()}`)
      return { etag: etag ?? '' }
    } catch (error) {
      if (error instanceof PreconditionFailed) return { holder: held }
      throw error
    }
  }

  async function attemptByReadBack(): Promise<{ etag: string } | { holder: LockBody }> {
    const held = await current()
    if (held && held.owner !== owner && held.expiresAt + CLOCK_MARGIN_MS > now()) return { holder: held }
    await retry(() => store.put(key, bodyNow(), putOptions))
    await pause(READ_BACK_AFTER_MS)
    const after = await current()
    return after?.owner === owner ? { etag: '' } : { holder: after ?? { owner: 'a writer that just left', expiresAt: now() } }
  }

  const started = now()
  const backoff = createBackoff({ minMs: 100, maxMs: 2000 }, { floorMs: 50 })
  for (let round = 0; ; round++) {
    // The lock written by this attempt lives from no earlier than now, by this clock.
    const sentAt = now()
    const result = await attempt()
    if ('etag' in result) return heldLock({ store, app, what, key, owner, etag: result.etag, sentAt, timing, retry, bodyNow, putOptions, now })
    if (now() - started >= timing.waitMs)
      throw new PushCacheError(
        what === 'push' ? 'UPLOAD_FAILED' : 'PRUNE_FAILED',
        `Another writer of ${app} holds ${key} in ${store.display}: ${result.holder.owner}, until ${new Date(result.holder.expiresAt).toISOString()}. Waited ${Math.round((now() - started) / 1000)} s; this ${what} wrote nothing. Run it again once that one finished, or delete ${key} if no push or prune of ${app} is running.`,
      )
    if (round === 0) logger.info(`waiting for the writer lock of ${app}, held by ${result.holder.owner}`)
    await pause(backoff.next())
  }
}

/** The version tag `list` gives the key itself, when the store tags keys. */
async function listTag(store: Store, key: string): Promise<{ etag?: string; lastModified?: number } | undefined> {
  for await (const entry of store.list(key)) if (entry.key === key) return { etag: entry.etag, lastModified: entry.lastModified?.getTime() }
  return undefined
}

interface HeldInput {
  store: Store
  app: string
  what: string
  key: string
  owner: string
  etag: string
  /** When the write that made the lock ours was sent. */
  sentAt: number
  timing: WriterLockTiming
  retry: <T>(attempt: () => Promise<T>) => Promise<T>
  bodyNow: () => Buffer
  putOptions: { contentType: string; expiresIn: number }
  now: () => number
}

function heldLock({ store, app, what, key, owner, etag: firstTag, sentAt, timing, retry, bodyNow, putOptions, now }: HeldInput): WriterLock {
  let etag = firstTag
  let lost: unknown
  /** When the last write that renewed the lock was sent: it expires `timing.seconds` after, at the earliest. */
  let renewedAt = sentAt
  // Renewals run one after another: each names the tag the one before it got.
  let renewals: Promise<void> = Promise.resolve()
  const ownerNow = async () => {
    const stream = await retry(() => store.read(key))
    return parseBody(stream ? (await readAll(stream, 64 * 1024)).toString('utf8') : '')?.owner
  }
  /** Without a condition: only once the lock was read back as ours. */
  const renewAsOwner = async () => {
    if ((await ownerNow()) !== owner) throw new PreconditionFailed(key)
    etag = (await retry(() => store.put(key, bodyNow(), putOptions))).etag ?? ''
  }
  const renew = () => {
    renewals = renewals.then(async () => {
      if (lost) return
      try {
        const sending = now()
        if (!store.conditionalWrites) return await renewAsOwner()
        try {
          etag = (await retry(() => store.put(key, bodyNow(), { ...putOptions, ifMatch: etag }))).etag ?? ''
          renewedAt = sending
        } catch (error) {
          // A renewal that landed though its answer was lost (a timeout, then a retry) left a tag
          // this one does not know: the lock is still ours when it still names us.
          if (!(error instanceof PreconditionFailed)) throw error
          await renewAsOwner()
          renewedAt = sending
        }
      } catch (error) {
        lost = error
      }
    })
    return renewals
  }
  const heartbeat = setInterval(renew, (timing.seconds * 1000) / 4)
  heartbeat.unref()
  let released: Promise<void> | undefined
  return {
    async confirm(step) {
      await renewals
      // Renewed less than half its life ago (the heartbeat renews every quarter): no other writer
      // can have taken it over, for that waits for its expiry plus the clock margin. The step then
      // costs no round trip. A store without conditional writes reads the owner back every time.
      if (lost || !store.conditionalWrites || now() - renewedAt >= (timing.seconds * 1000) / 2) await renew()
      if (lost)
        throw new PushCacheError(
          what === 'push' ? 'UPLOAD_FAILED' : 'PRUNE_FAILED',
          lost instanceof PreconditionFailed
            ? `This ${what} of ${app} lost its writer lock (${key}) to another writer and stopped before ${step}. Run it again.`
            : `This ${what} of ${app} could not renew its writer lock (${key}) and stopped before ${step}: ${(lost as Error).message}. Run it again.`,
          { cause: lost },
        )
    },
    release() {
      released ??= (async () => {
        clearInterval(heartbeat)
        await renewals
        if (lost) return
        try {
          if (store.conditionalWrites) await store.delete([key], { ifMatch: etag })
          else if ((await ownerNow()) === owner) await store.delete([key])
        } catch {
          // Taken over, or the store is gone: either way the lock expires on its own.
        }
      })()
      return released
    },
  }
}
