import type { Readable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { PushCacheError } from '../model/errors'
import { MANIFEST_MAX_BYTES, type Manifest, parseManifest } from '../model/manifest'
import { formatBytes } from '../model/progress'
import { forEachLimited, withRetry } from '../util/concurrency'
import { type Layout, layoutOf } from './layout'
import type { Store, StoreEntry } from './store'

const MANIFEST_READS = 8
/**
 * More keys than this under one prefix is not an app's builds but a listing that never ends (a
 * server that answers `IsTruncated` for ever): refused before it fills the memory (~300 MB of
 * entries). A million, as many files as the largest manifest names (`MANIFEST_MAX_BYTES`): a pop
 * of a 250,000-file build lists them all.
 */
const LIST_MAX_ENTRIES = 1_000_000

/** One build of an app found in a store. */
export interface StoredBuild {
  timestamp: number
  /** The manifest's key; undefined for a valpop Valkey build found only by its data keys. */
  manifestKey?: string
  files: string[]
  manifest?: Manifest
  /** False while a versioned build is still being written (its lock key exists). */
  complete: boolean
}

/** The whole stream, or its first bytes past `limit` (the stream is then closed): whoever asked can tell it was too long. */
export async function readAll(stream: Readable, limit = Number.POSITIVE_INFINITY): Promise<Buffer> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of stream) {
    chunks.push(Buffer.from(chunk))
    bytes += chunk.length
    if (bytes > limit) break // leaving the loop destroys the stream
  }
  return Buffer.concat(chunks)
}

/**
 * The value as text, or its first characters past `limit` bytes. Decoded chunk by chunk: the bytes
 * of a 10 MB manifest are not held a second time, joined, beside the text.
 */
async function readText(store: Store, key: string, retries = 3, limit = MANIFEST_MAX_BYTES): Promise<string | undefined> {
  return withRetry(
    async () => {
      const stream = await store.read(key)
      if (!stream) return undefined
      const decoder = new StringDecoder('utf8')
      let text = ''
      let bytes = 0
      for await (const chunk of stream) {
        text += decoder.write(chunk)
        bytes += chunk.length
        if (bytes > limit) break // leaving the loop destroys the stream
      }
      return text + decoder.end()
    },
    { retries, isTransient: store.isTransient },
  )
}

/** A listing past `limit` keys: a server that never ends it. */
const endless = (store: Store, prefix: string, limit: number) =>
  new PushCacheError(
    'STORE_UNREACHABLE',
    `${store.display} listed more than ${limit.toLocaleString('en')} keys under ${prefix} and was still going: its listing cannot be used. Check the server (a listing that never ends), or prune the app.`,
  )

/** Every entry under `prefix`, at most `LIST_MAX_ENTRIES`; a listing that fails transiently starts over. */
async function listEntries(store: Store, prefix: string, retries = 3, limit = LIST_MAX_ENTRIES): Promise<StoreEntry[]> {
  return withRetry(
    async () => {
      const entries: StoreEntry[] = []
      for await (const entry of store.list(prefix)) {
        if (entries.length === limit) throw endless(store, prefix, limit)
        entries.push(entry)
      }
      return entries
    },
    { retries, isTransient: store.isTransient },
  )
}

/** Known keys per range of a split listing, at most: with its slack, a range fits one page (1,000 keys). */
const KNOWN_KEYS_PER_RANGE = 900
/**
 * Keys a bounded range asks for beyond the known ones it holds, as a fraction of them: a range with
 * up to 10% more keys than the caller knows of (older builds' files) still costs one request, and
 * what a page lists past its range's end (the next range's first keys, listed and parsed for
 * nothing) stays under 10% of the listing. A range with more continues with its next page.
 */
const RANGE_SLACK = 0.1
/** Ranges listed at once. */
const RANGES_AT_ONCE = 32

/**
 * Calls `visit` with every entry under `prefix`, as {@link listEntries} lists them, but the key
 * space cut into ranges at some of the `known` keys (those the caller expects, each given as what
 * follows `prefix`) and the ranges listed at once: the pages of a long listing then cost one round
 * trip, not one each. Stores that cannot list a range list once. Nothing is held: a range that
 * fails transiently is listed over, so `visit` may see an entry twice (the newest last).
 */
export async function visitEntriesSplit(
  store: Store,
  prefix: string,
  known: readonly string[],
  retries: number,
  visit: (entry: StoreEntry) => void,
): Promise<void> {
  if (!store.listAfter || known.length <= KNOWN_KEYS_PER_RANGE) return visitRange(store, prefix, {}, retries, visit)
  // Each range ends at a cut, included, and the next starts after it. Any cuts partition the keys
  // once in S3's order (UTF-8 bytes), so only they are made keys and bytes: JavaScript's order (UTF-16)
  // picks them well enough, and 100,000 known names are never each a key and a Buffer. Cut evenly,
  // each bounded range asks for the keys it holds and its slack, no more.
  const sorted = [...known].sort()
  const count = Math.ceil(sorted.length / KNOWN_KEYS_PER_RANGE)
  const cuts = Array.from({ length: count - 1 }, (_, index) => Buffer.from(prefix + sorted[Math.round(((index + 1) * sorted.length) / count) - 1]))
  const ends: (Buffer | undefined)[] = [...cuts.sort(Buffer.compare), undefined]
  const maxKeys = Math.ceil((sorted.length / count) * (1 + RANGE_SLACK))
  await forEachLimited(
    ends.map((end, index) => ({ startAfter: ends[index - 1]?.toString(), end, maxKeys: end && maxKeys })),
    RANGES_AT_ONCE,
    (range) => visitRange(store, prefix, range, retries, visit),
  )
}

/** A range of a split listing: after `startAfter` up to `end` (included; the end of the listing when undefined), its first page `maxKeys` long. */
interface Range {
  startAfter?: string
  end?: Buffer
  maxKeys?: number
}

/** The entries under `prefix` in `range`, retried as a whole. */
function visitRange(store: Store, prefix: string, { startAfter, end, maxKeys }: Range, retries: number, visit: (entry: StoreEntry) => void): Promise<void> {
  return withRetry(
    async () => {
      let count = 0
      const after = startAfter === undefined ? undefined : Buffer.from(startAfter)
      for await (const entry of startAfter === undefined && !end ? store.list(prefix) : store.listAfter!(prefix, startAfter, maxKeys)) {
        // Compared as S3 orders keys (UTF-8 bytes); a listing without bounds makes no Buffer per key.
        if (end || after) {
          const key = Buffer.from(entry.key)
          if (end && Buffer.compare(key, end) > 0) break
          // A server that ignores StartAfter lists from the start: what it sends again is left out.
          if (after && Buffer.compare(key, after) <= 0) continue
        }
        if (count++ === LIST_MAX_ENTRIES) throw endless(store, prefix, LIST_MAX_ENTRIES)
        visit(entry)
      }
    },
    { retries, isTransient: store.isTransient },
  )
}

export async function listKeys(store: Store, prefix: string, retries = 3): Promise<string[]> {
  return (await listEntries(store, prefix, retries)).map((entry) => entry.key)
}

/** The build a manifest key names, or undefined when the key is not a manifest, is gone or names no file. */
async function readBuild(store: Store, app: string, { key, size }: StoreEntry, retries: number): Promise<StoredBuild | undefined> {
  const timestamp = layoutOf(store).parseManifestKey(app, key)
  if (timestamp === undefined) return undefined
  // Refused by its listed size, before a byte of it is fetched (a Valkey GET sends a value whole).
  if (size !== undefined && size > MANIFEST_MAX_BYTES)
    throw new PushCacheError(
      'MANIFEST_UNREADABLE',
      `Manifest ${key} cannot be read: it holds ${formatBytes(size)}, more than the ${formatBytes(MANIFEST_MAX_BYTES)} a manifest may. Nothing was pruned; fix or delete that key.`,
    )
  const text = await readText(store, key, retries)
  if (text === undefined) return undefined // deleted since it was listed
  const manifest = parseManifest(text, key, timestamp)
  // A manifest that names no file (`[]`, `{"files":[]}`) protects nothing and serves nothing: kept
  // as "the latest build", it would let a prune delete the live one.
  if (manifest.files.length === 0) return undefined
  return { timestamp, manifestKey: key, files: manifest.files, manifest, complete: true }
}

/** For reads that can do without the newest manifest: an unreadable one counts as none. */
const unlessUnreadable = (error: unknown): undefined => {
  if (error instanceof PushCacheError && error.code === 'MANIFEST_UNREADABLE') return undefined
  throw error
}

/** Every manifest of `app`, and those that may be its newest build, newest first (versioned builds still being written are left out). */
async function candidates(store: Store, app: string, retries: number): Promise<{ entries: StoreEntry[]; newestFirst: StoreEntry[]; locked: Set<number> }> {
  const layout = layoutOf(store)
  const [entries, locked] = await Promise.all([listEntries(store, layout.manifestPrefix(app), retries), lockedTimestamps(store, app, retries)])
  const newestFirst = entries
    .filter(({ key }) => layout.parseManifestKey(app, key) !== undefined && !locked.has(layout.parseManifestKey(app, key)!))
    .sort((a, b) => layout.parseManifestKey(app, b.key)! - layout.parseManifestKey(app, a.key)!)
  return { entries, newestFirst, locked }
}

/** The first of `newestFirst` that is a build; `first` is the read of the first entry when it already started. */
async function firstBuild(store: Store, app: string, newestFirst: readonly StoreEntry[], retries: number, first?: Promise<StoredBuild | undefined>) {
  // Past manifests that are no build (empty, deleted since listed); bounded by the listing.
  for (const [index, entry] of newestFirst.entries()) {
    const build = await (index === 0 && first ? first : readBuild(store, app, entry, retries))
    if (build) return build
  }
  return undefined
}

/**
 * The newest complete build that has a manifest, reading that one manifest only (valpop's
 * duplicate-image skip and pop ask for nothing more), or more when it names no file.
 */
export async function newestBuild(store: Store, app: string, retries = 3): Promise<StoredBuild | undefined> {
  return firstBuild(store, app, (await candidates(store, app, retries)).newestFirst, retries)
}

/** What a push learns of the manifests of its app, from one listing. */
export interface ManifestsAround {
  /** The newest build (none when its manifest cannot be read: nothing is vouched for). */
  newest?: StoredBuild
  /** The build already at the push's timestamp, if any. */
  at?: StoredBuild
  /** Whether a manifest newer than the push's timestamp is listed. */
  newer: boolean
  /** Versioned stores: whether a build at the push's timestamp is marked in progress (the lock of a push that died). */
  atLocked: boolean
}

/**
 * The newest build, the build at `timestamp` and whether a newer one exists, reading the listing
 * once and each manifest at most once: a push asks all three before it writes anything. `known`,
 * the newest build when the caller read it already (a manifest never changes once written).
 * A build at `timestamp` that cannot be read throws: a push must not guess whether it is its own.
 */
export async function manifestsAround(store: Store, app: string, timestamp: number, retries = 3, known?: StoredBuild | null): Promise<ManifestsAround> {
  const layout = layoutOf(store)
  const { entries, newestFirst, locked } = await candidates(store, app, retries)
  const own = entries.find((entry) => entry.key === layout.manifestKey(app, timestamp))
  const first = known === undefined && newestFirst[0] ? readBuild(store, app, newestFirst[0], retries) : undefined
  first?.catch(() => {}) // awaited below, by one read or both
  const [newest, at] = await Promise.all([
    known === undefined ? firstBuild(store, app, newestFirst, retries, first).catch(unlessUnreadable) : (known ?? undefined),
    own && (own === newestFirst[0] && first ? first : readBuild(store, app, own, retries)),
  ])
  const newer = entries.some(({ key }) => (layout.parseManifestKey(app, key) ?? -1) > timestamp)
  return { newest, at, newer, atLocked: locked.has(timestamp) }
}

/** Versioned builds still being written (their lock key exists); flat stores have no locks. */
async function lockedTimestamps(store: Store, app: string, retries: number): Promise<Set<number>> {
  const locks = layoutOf(store).locks
  if (!locks) return new Set()
  const prefix = locks.prefix(app)
  return new Set((await listKeys(store, prefix, retries)).map((key) => Number(key.slice(prefix.length))))
}

/**
 * Every build of `app`, newest first, each with its manifest. A manifest that cannot be read
 * throws `MANIFEST_UNREADABLE`: callers that delete must never guess what it protected.
 *
 * Versioned stores list manifests and locks, not data. Only when an app has no manifest at all
 * (written by valpop alone) are its data keys scanned to find the builds.
 */
export async function listBuilds(store: Store, app: string, retries = 3): Promise<StoredBuild[]> {
  const layout = layoutOf(store)
  const manifests = await listEntries(store, layout.manifestPrefix(app), retries)
  const builds: StoredBuild[] = []
  // An app with months of builds has hundreds of manifests: read them a few at a time, not one by one.
  await forEachLimited(manifests, MANIFEST_READS, async (entry) => {
    const build = await readBuild(store, app, entry, retries)
    if (build) builds.push(build)
  })
  if (layout.keysPerBuild) {
    const locked = await lockedTimestamps(store, app, retries)
    if (builds.length === 0) builds.push(...(await scanBuildsByDataKeys(store, layout, app, retries)))
    for (const build of builds) build.complete = !locked.has(build.timestamp)
  }
  return builds.sort((a, b) => b.timestamp - a.timestamp)
}

/**
 * The builds whose data keys name them: what valpop alone leaves, with no manifest. A key the store
 * dates (`lastModified`: push-cache wrote it, see {@link orphanedKeys}) belongs to a build of ours,
 * which is one only with its manifest: a build still written, or the orphans of a crashed one.
 */
async function scanBuildsByDataKeys(store: Store, layout: Layout, app: string, retries: number): Promise<StoredBuild[]> {
  const byTimestamp = new Map<number, string[]>()
  for (const { key, lastModified } of await listEntries(store, layout.dataPrefix(app), retries)) {
    const parsed = layout.parseDataKey(app, key)
    if (parsed?.timestamp === undefined || lastModified) continue
    const files = byTimestamp.get(parsed.timestamp) ?? []
    files.push(parsed.relpath)
    byTimestamp.set(parsed.timestamp, files)
  }
  return [...byTimestamp].map(([timestamp, files]) => ({ timestamp, files: files.sort(), complete: true }))
}

/**
 * The older builds' keys a build names for files it found unchanged, by relpath: read straight from
 * the manifest's version column. Prune's plan and its orphan check both read them here.
 */
export function versionsOf({ manifest }: Pick<StoredBuild, 'manifest'>): Record<string, number> {
  const versions: Record<string, number> = {}
  const column = manifest?.details?.version ?? []
  column.forEach((version, index) => {
    if (typeof version === 'number') versions[manifest!.files[index]!] = version
  })
  return versions
}

/**
 * Versioned stores: data keys that a crashed push of ours left for ever, provably dead. A push
 * persists its data keys before its manifest; killed in between, they neither expire nor belong to
 * a build. A key is one when the store dates it (only keys push-cache wrote are dated: valpop's
 * manifest-less builds never are), it was written more than twice the pending expiry ago (the life
 * of its build's lock: a living push would have finished or failed by then), no lock or manifest
 * of its build exists, and no manifest names it (`builds`: every build, complete or not).
 */
export async function orphanedKeys(store: Store, app: string, builds: readonly StoredBuild[], nowMs: number, retries = 3): Promise<string[]> {
  const layout = layoutOf(store)
  if (!layout.keysPerBuild) return []
  const deadBefore = nowMs - 2 * (store.pendingExpiry?.seconds ?? 3600) * 1000
  const [entries, locked] = await Promise.all([listEntries(store, layout.dataPrefix(app), retries), lockedTimestamps(store, app, retries)])
  const owned = new Set(builds.map((build) => build.timestamp))
  const named = new Set(builds.flatMap((build) => Object.entries(versionsOf(build)).map(([relpath, version]) => layout.dataKey(app, version, relpath))))
  return entries
    .filter(({ key, lastModified }) => {
      const timestamp = layout.parseDataKey(app, key)?.timestamp
      if (timestamp === undefined || !lastModified || lastModified.getTime() >= deadBefore) return false
      return !owned.has(timestamp) && !locked.has(timestamp) && !named.has(key)
    })
    .map(({ key }) => key)
    .sort()
}

/** The timestamp of the newest of these manifest keys of `app`, readable or not. */
function newestTimestampOf(layout: Layout, app: string, keys: readonly string[]): number | undefined {
  let newest: number | undefined
  for (const key of keys) {
    const timestamp = layout.parseManifestKey(app, key)
    if (timestamp !== undefined && (newest === undefined || timestamp > newest)) newest = timestamp
  }
  return newest
}

/** The timestamp of the newest manifest key of `app`, readable or not (flat stores); one listing, no reads. */
export async function newestManifestTimestamp(store: Store, app: string, retries = 3): Promise<number | undefined> {
  const layout = layoutOf(store)
  return newestTimestampOf(layout, app, await listKeys(store, layout.manifestPrefix(app), retries))
}

/**
 * The newest build (none when its manifest cannot be read) and the newest manifest key listed,
 * readable or not, from one listing: a pop of a flat store reads both before its downloads.
 */
export async function newestBuildListed(store: Store, app: string, retries = 3): Promise<{ newest?: StoredBuild; newestListed?: number }> {
  const { entries, newestFirst } = await candidates(store, app, retries)
  const newest = await firstBuild(store, app, newestFirst, retries).catch(unlessUnreadable)
  return {
    newest,
    newestListed: newestTimestampOf(
      layoutOf(store),
      app,
      entries.map((entry) => entry.key),
    ),
  }
}
