import { withRetry } from '../util/concurrency'
import { md5 } from '../util/digest'
import { readAll } from './builds'
import { layoutOf } from './layout'
import type { Store } from './store'

/**
 * No entrypoint without a record. On a flat store the entrypoint key is what clients load, and a
 * push writes it before its manifest (the manifest makes the build complete for readers). A push
 * that fails or dies in between would leave a served entrypoint that no manifest names, whose files
 * a prune would take for a dying build's. So before its entrypoints a push leaves a pending record
 * (`locks/<app>/pending-<ts>`: the build's files and its entrypoints' MD5s), removed once its
 * manifest landed. A prune keeps the files of every record (pending or manifest) whose entrypoints
 * are the ones served, matched by MD5, and removes pending records that are no longer served.
 */
export interface PendingRecord {
  key: string
  timestamp: number
  files: string[]
  /** MD5 of each entrypoint the build wrote, by relpath. */
  entrypoints: Record<string, string>
}

const prefixOf = (store: Store, app: string) => `${layoutOf(store).leasePrefix(app)}pending-`
export const pendingKey = (store: Store, app: string, timestamp: number) => `${prefixOf(store, app)}${timestamp}`

/** Writes the record; with `ifNoneMatch`, only where there is none (else the store throws PreconditionFailed). */
export async function writePending(store: Store, app: string, record: Omit<PendingRecord, 'key'>, ifNoneMatch?: '*'): Promise<void> {
  const { timestamp, files, entrypoints } = record
  await store.put(pendingKey(store, app, timestamp), Buffer.from(JSON.stringify({ timestamp, files, entrypoints })), {
    contentType: 'application/json',
    ifNoneMatch,
  })
}

const isStringRecord = (value: unknown): value is Record<string, string> =>
  typeof value === 'object' && value !== null && Object.values(value).every((item) => typeof item === 'string')

/** Every pending record of `app`; one that cannot be read is kept as one that protects nothing (a prune then keeps it too). */
export async function readPending(store: Store, app: string, retries: number): Promise<PendingRecord[]> {
  const records: PendingRecord[] = []
  const retry = <T>(attempt: () => Promise<T>) => withRetry(attempt, { retries, isTransient: store.isTransient })
  const keys: string[] = []
  for await (const { key } of store.list(prefixOf(store, app))) keys.push(key)
  for (const key of keys) {
    const body = await retry(() => store.read(key))
    if (!body) continue
    try {
      const value = JSON.parse((await readAll(body, 16 * 1024 * 1024)).toString('utf8')) as Partial<PendingRecord>
      if (typeof value.timestamp === 'number' && Array.isArray(value.files) && isStringRecord(value.entrypoints))
        records.push({ key, timestamp: value.timestamp, files: value.files.filter((file) => typeof file === 'string'), entrypoints: value.entrypoints })
    } catch {}
  }
  return records
}

/** The MD5 of each entrypoint the store serves now, by relpath (flat stores: the one key each). */
export async function servedEntrypoints(store: Store, app: string, entrypoints: readonly string[], retries: number): Promise<Map<string, string>> {
  const served = new Map<string, string>()
  const layout = layoutOf(store)
  for (const relpath of entrypoints) {
    const body = await withRetry(() => store.read(layout.dataKey(app, 0, relpath)), { retries, isTransient: store.isTransient })
    if (body) served.set(relpath, md5(await readAll(body)))
  }
  return served
}

/** Whether a record's entrypoints are the ones served: it names at least one, and each it names is served with its MD5. */
export function isServed(recorded: Record<string, string | undefined>, served: ReadonlyMap<string, string>): boolean {
  const named = Object.entries(recorded).filter(([relpath]) => served.has(relpath))
  return named.length > 0 && named.every(([relpath, digest]) => digest !== undefined && served.get(relpath) === digest.toLowerCase())
}
