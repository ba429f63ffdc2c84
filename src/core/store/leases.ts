import { randomBytes } from 'node:crypto'
import { PushCacheError } from '../model/errors'
import { withRetry } from '../util/concurrency'
import { readAll } from './builds'
import { layoutOf } from './layout'
import type { Store } from './store'

/**
 * A push that skips unchanged files relies on objects that other builds wrote, while a prune of the
 * same app may be deleting them. Each leaves a lease before it looks at the store and reads the
 * other's after (Dekker's handshake): on a store that reads its own writes (S3, Valkey, a
 * directory), at least one of the two sees the other.
 * - A push leases every relpath of its build, then looks for prune leases: while one lives, it skips nothing.
 * - A prune leases, then reads the push leases and deletes nothing they name.
 * A lease older than this is dead (its writer crashed): whoever runs longer stops relying on its own.
 */
export const LEASE_SECONDS = 3600

export type LeaseKind = 'push' | 'prune'

export interface Lease {
  /** False once the lease is too old for others to honour: stop relying on it. */
  live(): boolean
  /** Best effort: a lease left behind dies on its own. */
  release(): Promise<void>
}

const prefixOf = (store: Store, app: string, kind: LeaseKind) => `${layoutOf(store).leasePrefix(app)}${kind}-`

/**
 * Writes the lease, through `retry` when given. Every attempt writes the same key: a retry after a
 * write that landed but whose answer was lost leaves one lease, not one per attempt.
 */
export async function takeLease(
  store: Store,
  app: string,
  kind: LeaseKind,
  relpaths: readonly string[],
  retry: <T>(attempt: () => Promise<T>) => Promise<T> = (attempt) => attempt(),
  now = Date.now,
): Promise<Lease> {
  const key = `${prefixOf(store, app, kind)}${now()}-${randomBytes(4).toString('hex')}`
  const takenAt = now()
  const body = Buffer.from(JSON.stringify({ relpaths }))
  await retry(() => store.put(key, body, { contentType: 'application/json', expiresIn: LEASE_SECONDS }))
  return {
    // A minute of margin for the clocks of two machines.
    live: () => now() - takenAt < (LEASE_SECONDS - 60) * 1000,
    release: () => store.delete([key]).catch(() => {}),
  }
}

/** Keys of the live leases of `kind`. Versioned stores expire leases themselves; flat ones by their age. */
async function liveLeaseKeys(store: Store, app: string, kind: LeaseKind, now: () => number): Promise<string[]> {
  const keys: string[] = []
  for await (const { key, lastModified } of store.list(prefixOf(store, app, kind)))
    if (!lastModified || now() - lastModified.getTime() < LEASE_SECONDS * 1000) keys.push(key)
  return keys
}

export async function pruneRunning(store: Store, app: string, now = Date.now): Promise<boolean> {
  return (await liveLeaseKeys(store, app, 'prune', now)).length > 0
}

/** Every relpath a running push of `app` may be relying on. */
export async function relpathsInUse(store: Store, app: string, retries: number, now = Date.now): Promise<Set<string>> {
  const inUse = new Set<string>()
  for (const key of await liveLeaseKeys(store, app, 'push', now)) {
    const body = await withRetry(() => store.read(key), { retries, isTransient: store.isTransient })
    if (!body) continue // released since it was listed
    let relpaths: unknown
    try {
      relpaths = (JSON.parse((await readAll(body)).toString('utf8')) as { relpaths?: unknown }).relpaths
    } catch {}
    // A prune that cannot tell what a push relies on must not guess.
    if (!Array.isArray(relpaths) || !relpaths.every((relpath) => typeof relpath === 'string'))
      throw new PushCacheError(
        'MANIFEST_UNREADABLE',
        `Lease ${key} of a running push cannot be read. Nothing was pruned; delete that object if no push of ${app} is running.`,
      )
    for (const relpath of relpaths) inUse.add(relpath)
  }
  return inUse
}
