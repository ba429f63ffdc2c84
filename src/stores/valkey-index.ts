import type { Cluster, Redis } from 'iovalkey'
import type { StoreEntry } from '../core/store/store'
import type { ValkeyConnection } from './valkey-connection'
import type { ValkeyScan } from './valkey-options'
import { scanKeys, scanPrefix } from './valkey-scan'

/**
 * The key families of one app that push-cache lists: valpop's (`data:`, `manifest:`, `lock:`) and
 * our writer lock and pending records (`lease:`). An app name holds no `:` (options.ts), so the second field is the whole app.
 */
const FAMILY = /^(data|manifest|lock|lease):([A-Za-z0-9_][A-Za-z0-9._-]*):/

/** The index of a key's family and app, or undefined for a key no index holds. */
export function indexOf(key: string): { index: string; app: string } | undefined {
  const match = FAMILY.exec(key)
  return match ? { index: indexKey(match[2]!, match[1]!), app: match[2]! } : undefined
}

/**
 * One sorted set per app and family: member = key, score = when push-cache last wrote it (ms), or 0
 * for a key the one-time scan adopted (valpop's). The hash tag keeps an app's index keys in one slot;
 * the data keys stay where valpop's names put them, so the two are never in one transaction.
 */
const indexKey = (app: string, family: string) => `push-cache-index:{${app}}:${family}`
/** Set once the app's keys written without an index (valpop's) were scanned into it. */
const adoptedKey = (app: string) => `push-cache-index:{${app}}:adopted`

/**
 * A missing key's entry is dropped only this long after its last write. A put sends its index entry
 * with (or, for a key that never expires, before) the key itself; an entry is dropped only if no
 * write touched it since it was read, so the only write that could still land unindexed is one whose
 * SET arrives this long after its ZADD: far beyond any command deadline.
 */
const STALE_AFTER_MS = 10 * 60 * 1000
/**
 * Index entries per ZSCAN page and per pipelined round of STRLEN (and per ZADD of the adoption):
 * a prune lists every data key of the app, 300,000 for three builds of 100,000 files, in 60 rounds
 * of two round trips; a page of keys holds about a megabyte.
 */
const PAGE = 5000

/**
 * Removes entries whose score is still the one the lister read (no write touched them since).
 * ARGV: member, score, member, score, ...
 */
const DROP_IF_UNCHANGED = `local dropped = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return dropped`

/**
 * The index held every key before this listing (adopted by an earlier run, or there was nothing
 * to adopt), this listing added some, or the index could not be written.
 */
type Adoption = 'before' | 'now' | 'unwritable'

export interface ValkeyIndex {
  /**
   * Runs `write` of `key` with its index entry. A key that expires on its own goes out in the same
   * pipeline as its entry (no extra round trip); one that never expires waits for its entry first,
   * so that no permanent key is ever unindexed. The entries of the keys written in one turn of the
   * event loop go in one ZADD per index. (A key written with an expiry becomes permanent only
   * through PERSIST, after its put, entry included, succeeded.)
   */
  written<T>(key: string, expires: boolean, write: () => Promise<T>): Promise<T>
  /** Every key that starts with `prefix`, from the index where the prefix names an app's family. */
  list(prefix: string): AsyncIterable<StoreEntry>
}

/** The one place entries are added to an index: batched, see `addEntry`. */
function entryBatcher(guard: ValkeyConnection['guard']): (valkey: Redis | Cluster, index: string, key: string) => Promise<{ added: Promise<number> }> {
  /** Entries not sent yet, per index, and when their ZADD is sent. */
  const unsent = new Map<string, { members: (number | string)[]; sent: Promise<{ added: Promise<number> }> }>()

  /**
   * Adds `key` to `index` in one ZADD with the entries added until the next turn of the event loop:
   * a push's thousands of keys cost a few commands, not one each. Resolves once the ZADD is sent,
   * to its reply: a key's SET sent right then goes in the same auto-pipeline, behind its entry (a
   * SET sent before the ZADD could leave in a pipeline of its own, a round trip ahead of it).
   */
  return function addEntry(valkey: Redis | Cluster, index: string, key: string): Promise<{ added: Promise<number> }> {
    let batch = unsent.get(index)
    if (!batch) {
      const members: (number | string)[] = []
      const sent = new Promise<{ added: Promise<number> }>((resolve) =>
        setImmediate(() => {
          unsent.delete(index)
          // https://valkey.io/commands/zadd/
          resolve({ added: guard(valkey.zadd(index, ...members)) })
        }),
      )
      batch = { members, sent }
      unsent.set(index, batch)
    }
    batch.members.push(Date.now(), key)
    return batch.sent
  }
}

export function valkeyIndex(connection: ValkeyConnection, mode: ValkeyScan): ValkeyIndex {
  const { client, guard } = connection
  /** Apps being adopted by this process, and those known to be adopted: one check each. */
  const adopting = new Map<string, Promise<Adoption>>()
  const adoptedApps = new Set<string>()
  const addEntry = entryBatcher(guard)

  /** Whether the app was adopted before this listing; adopts it (one SCAN of the keyspace) when not. */
  function adopted(app: string): Promise<Adoption> {
    if (adoptedApps.has(app)) return Promise.resolve('before')
    let done = adopting.get(app)
    if (!done) {
      done = adopt(connection, app)
      adopting.set(app, done)
      // Tried again by the next listing when it failed or could not write.
      done.then(
        (result) => (result === 'unwritable' ? adopting.delete(app) : adoptedApps.add(app)),
        () => adopting.delete(app),
      )
    }
    return done
  }

  async function* list(prefix: string): AsyncIterable<StoreEntry> {
    const at = indexOf(prefix)
    if (mode === 'always' || !at) return yield* scanPrefix(connection, prefix)
    const valkey = await client()
    const seen = new Set<string>() // ZSCAN may return a member twice
    let cursor = '0'
    // The first page and the adoption check go out together (one slot, one round trip).
    const [adoption, firstPage] = await Promise.all([mode === 'once' ? adopted(at.app) : 'before', guard(valkey.zscan(at.index, '0', 'COUNT', PAGE))])
    if (adoption === 'unwritable') return yield* scanPrefix(connection, prefix)
    // A page read before this listing's adoption misses what it added.
    let page: [string, string[]] | undefined = adoption === 'before' ? firstPage : undefined
    do {
      const [next, pairs] = page ?? (await guard(valkey.zscan(at.index, cursor, 'COUNT', PAGE)))
      page = undefined
      cursor = next
      const members: { key: string; score: string }[] = []
      for (let i = 0; i < pairs.length; i += 2) if (pairs[i]!.startsWith(prefix) && !seen.has(pairs[i]!)) members.push({ key: pairs[i]!, score: pairs[i + 1]! })
      for (const member of members) seen.add(member.key)
      yield* present(connection, at.index, members)
    } while (cursor !== '0')
  }

  return {
    async written(key, expires, write) {
      const at = indexOf(key)
      if (!at) return write()
      const { added } = await addEntry(await client(), at.index, key)
      if (!expires) await added
      return (await Promise.all([added, write()]))[1]
    },
    list,
  }
}

/**
 * The members whose keys exist, with their sizes (one pipelined round of STRLEN; EXISTS only for
 * the empty ones). Entries of keys gone for longer than {@link STALE_AFTER_MS} (expired keys of
 * crashed pushes, deleted builds) are dropped on the way, best effort: a reader without write
 * rights still lists.
 */
async function* present({ client, guard }: ValkeyConnection, index: string, members: { key: string; score: string }[]): AsyncIterable<StoreEntry> {
  if (members.length === 0) return
  const valkey = await client()
  const sizes = await guard(Promise.all(members.map(({ key }) => valkey.strlen(key))))
  // STRLEN answers 0 for an empty value and for no key alike.
  const empty = members.filter((_, i) => sizes[i] === 0)
  const found = empty.length === 0 ? [] : await guard(Promise.all(empty.map(({ key }) => valkey.exists(key))))
  const existing = new Set(empty.filter((_, i) => found[i] === 1).map(({ key }) => key))
  const staleBefore = Date.now() - STALE_AFTER_MS
  const stale: string[] = []
  for (const [i, { key, score }] of members.entries()) {
    if (sizes[i]! > 0 || existing.has(key)) {
      // Dated only when push-cache wrote it: an adopted key (score 0) is valpop's.
      yield { key, size: sizes[i]!, lastModified: Number(score) > 0 ? new Date(Number(score)) : undefined }
    } else if (Number(score) < staleBefore) stale.push(key, score)
  }
  // https://valkey.io/commands/eval/ ; one key, the index: one slot in a cluster.
  if (stale.length > 0) await guard(valkey.eval(DROP_IF_UNCHANGED, 1, index, ...stale)).catch(() => {})
}

/**
 * Adds every key of `app` that exists without an entry (valpop's) to the app's index, once: one
 * SCAN of the whole keyspace (every master in a cluster). Entries our pushes wrote keep their
 * dates (ZADD NX). `unwritable` when the index could not be written (a read-only replica, a user
 * without write rights): that listing scans instead.
 */
async function adopt(connection: ValkeyConnection, app: string): Promise<Adoption> {
  const { client, guard } = connection
  const valkey = await client()
  if ((await guard(valkey.exists(adoptedKey(app)))) === 1) return 'before'
  const found = new Map<string, string[]>()
  for await (const key of scanKeys(connection, `*:${app}:*`)) {
    const at = indexOf(key)
    if (at?.app !== app) continue
    const keys = found.get(at.index)
    if (keys) keys.push(key)
    else found.set(at.index, [key])
  }
  try {
    for (const [index, keys] of found)
      for (let start = 0; start < keys.length; start += PAGE)
        // https://valkey.io/commands/zadd/ NX: a key our pushes indexed keeps its date.
        await guard(valkey.zadd(index, 'NX', ...keys.slice(start, start + PAGE).flatMap((key) => [0, key])))
    await guard(valkey.set(adoptedKey(app), new Date().toISOString()))
    // Nothing added: the page read beside the adoption is whole.
    return found.size > 0 ? 'now' : 'before'
  } catch {
    return 'unwritable'
  }
}
