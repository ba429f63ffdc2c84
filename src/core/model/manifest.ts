import { PushCacheError } from './errors'
import { unsafePathReason } from './paths'
import { formatBytes } from './progress'

/** What we record of each file; every field is optional so that readers of older manifests cope. */
export interface ManifestEntry {
  size?: number
  contentType?: string
  cacheControl?: string
  /** Hex MD5 of the bytes. */
  md5?: string
  /** Flat stores: the object's version tag when this build wrote or checked it (see `StoreEntry.etag`). */
  etag?: string
  /**
   * Versioned stores: the build whose key holds the bytes, when this build found them unchanged in
   * an older build instead of writing them again. Absent: this build's own key.
   */
  version?: number
}

/**
 * `manifests/<app>/<ts>` (S3, local) and `manifest:<app>:<ts>` (Valkey). valpop reads `files` and
 * `timestamp` and ignores the rest (Go's json), so fields may be added but these two never change.
 *
 * The per-file details are `details`, columns parallel to `files` (see {@link ManifestColumns}),
 * in memory as on the wire: read one file's with {@link entryOf}. An object per file would hold
 * ~10 MB more for 100,000 files, on every push that reads the previous manifest.
 */
export interface Manifest {
  /**
   * Paths relative to the output root, `/`-separated: every file of the build, written by it or
   * found unchanged in the store (then its entry's `version` names the key on versioned stores).
   */
  files: string[]
  /** The build's timestamp in seconds. */
  timestamp: number
  /** The container image the build shipped in (valpop's duplicate skip compares it). */
  image?: string
  /** Which files were published last. */
  entrypoints?: string[]
  /** `unplugin-push-cache@<version>` */
  generator?: string
  /** Per-file details, parallel to `files`. */
  details?: ManifestColumns
  [extra: string]: unknown
}

/**
 * The per-file details as written: one array per field, parallel to `files` (`null`: not known),
 * headers as indexes into the tables of the distinct values. A 100,000-file build writes about
 * 10 MB where a map keyed by relpath took 24 MB: the path is not repeated, nor the headers.
 */
export interface ManifestColumns {
  size: (number | null)[]
  md5: (string | null)[]
  /** Indexes into `contentTypes`. */
  contentType: (number | null)[]
  contentTypes: string[]
  /** Indexes into `cacheControls`. */
  cacheControl: (number | null)[]
  cacheControls: string[]
  etag?: (string | null)[]
  version?: (number | null)[]
}

/**
 * A manifest above this is not one: readers stop reading past it, and it is refused. Our own
 * pushes write about 100 B per file (a 250,000-file build: ~26 MB), so this is a build of more
 * than a million files; it bounds what a planted key can make a reader hold.
 */
export const MANIFEST_MAX_BYTES = 128 * 1024 * 1024
/** How far ahead of this machine's clock a build may be dated (clocks of CI runners drift, but not by a day), and its manifest's body from its key. */
export const FUTURE_TOLERANCE_SECONDS = 24 * 60 * 60

/** Ours nests two levels (`details` → a column); JSON.parse spends seconds on millions. */
const MAX_DEPTH = 64

/** Whether arrays and objects nest deeper than `limit`, counting brackets outside strings. */
function nestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0
  let inString = false
  for (let index = 0; index < text.length; index++) {
    const char = text[index]
    if (inString) {
      if (char === '\\') index++
      else if (char === '"') inString = false
    } else if (char === '"') inString = true
    else if (char === '[' || char === '{') {
      if (++depth > limit) return true
    } else if (char === ']' || char === '}') depth--
  }
  return false
}

const isStringList = (value: unknown): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string')
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** What is wrong with a parsed manifest's fields, or undefined. Extra fields are anyone's. */
function fieldProblem(manifest: Record<string, unknown>, timestampFromKey: number, now: number): string | undefined {
  if (!isStringList(manifest.files)) return '`files` is not a list of paths'
  const unsafe = manifest.files.find((file) => unsafePathReason(file) !== undefined)
  if (unsafe !== undefined) return `\`files\` names ${JSON.stringify(unsafe)}, whose path ${unsafePathReason(unsafe)}`
  // valpop may read the clock twice, for the key and for the body: only a gap of more than a day is foreign.
  const { timestamp } = manifest
  if (timestamp !== undefined && !(Number.isSafeInteger(timestamp) && Math.abs((timestamp as number) - timestampFromKey) <= FUTURE_TOLERANCE_SECONDS))
    return `its \`timestamp\` ${JSON.stringify(timestamp)} is not the ${timestampFromKey} of its key`
  if (timestampFromKey > now + FUTURE_TOLERANCE_SECONDS) return `it is dated ${new Date(timestampFromKey * 1000).toISOString()}, ahead of this machine's clock`
  if (manifest.image !== undefined && typeof manifest.image !== 'string') return '`image` is not a string'
  if (manifest.entrypoints !== undefined && !isStringList(manifest.entrypoints)) return '`entrypoints` is not a list of paths'
  if (manifest.entries !== undefined && !(isRecord(manifest.entries) && Object.values(manifest.entries).every(isEntry)))
    return '`entries` is not a map of paths to { size, contentType, cacheControl }'
  if (manifest.details !== undefined) return columnsProblem(manifest.details, manifest.files.length)
  return undefined
}

const isSize = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0
const isIndexInto = (table: readonly unknown[]) => (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) < table.length
const isString = (value: unknown) => typeof value === 'string'

/** What is wrong with `details`, or undefined: each column holds one value (or null) per file. */
function columnsProblem(details: unknown, files: number): string | undefined {
  if (!isRecord(details) || !isStringList(details.contentTypes) || !isStringList(details.cacheControls)) return '`details` is not a set of columns'
  const columns: [string, (value: unknown) => boolean, boolean][] = [
    ['size', isSize, true],
    ['md5', isString, true],
    ['contentType', isIndexInto(details.contentTypes), true],
    ['cacheControl', isIndexInto(details.cacheControls), true],
    ['etag', isString, false],
    ['version', Number.isSafeInteger, false],
  ]
  for (const [name, isValue, required] of columns) {
    const column = details[name]
    if (column === undefined && !required) continue
    if (!Array.isArray(column) || column.length !== files || !column.every((value) => value === null || isValue(value)))
      return `\`details.${name}\` is not a column of ${files} values`
  }
  return undefined
}

const finders = new WeakMap<readonly string[], (relpath: string) => number>()

/**
 * The index of `relpath` in `files`, or -1: a binary search, over `files` when they are sorted
 * (ours are), else over their indexes sorted once (a store's listing need not be; a Map of them
 * would hold ~40 B more per file).
 */
export function indexIn(files: readonly string[], relpath: string): number {
  let find = finders.get(files)
  if (!find) {
    if (files.every((file, index) => index === 0 || files[index - 1]! < file)) find = (wanted) => binarySearch(files.length, (at) => files[at]!, wanted)
    else {
      const order = Uint32Array.from(files.keys()).sort((a, b) => (files[a]! < files[b]! ? -1 : files[a]! > files[b]! ? 1 : 0))
      find = (wanted) => {
        const at = binarySearch(order.length, (position) => files[order[position]!]!, wanted)
        return at === -1 ? -1 : order[at]!
      }
    }
    finders.set(files, find)
  }
  return find(relpath)
}

/**
 * {@link indexIn} for names asked mostly in the order of `files` (a listing, the plan, the newest
 * manifest: each sorted): the one after the last found is tried first, a comparison instead of a
 * binary search of ~17 for 100,000 files.
 */
export function inOrderFinder(files: readonly string[]): (relpath: string) => number {
  let next = 0
  return (relpath) => {
    const index = files[next] === relpath ? next : indexIn(files, relpath)
    if (index !== -1) next = index + 1
    return index
  }
}

/**
 * Makes the strings of `manifest` that equal the build's its own: each of its `files` named among
 * `relpaths` becomes that relpath, in place, and the MD5 of each file hashed since is the one it
 * records when they are equal (returned: the MD5 to keep of a file). Read beside a build of 100,000
 * files, the manifest's copies were ~11 MB more held through the plan (the names from the read on,
 * each MD5 twice); equal strings of a file's are then garbage as soon as they are made.
 */
export function shareStrings(manifest: Pick<Manifest, 'files' | 'details'>, relpaths: readonly string[]): (relpath: string, md5: string) => string {
  const { files, details } = manifest
  const inBuild = inOrderFinder(relpaths)
  files.forEach((file, index) => {
    const at = inBuild(file)
    if (at !== -1) files[index] = relpaths[at]!
  })
  if (!details) return (_relpath, md5) => md5
  const inManifest = inOrderFinder(files)
  return (relpath, md5) => {
    const index = inManifest(relpath)
    return index !== -1 && details.md5[index] === md5 ? (details.md5[index] as string) : md5
  }
}

/** Where `wanted` is among `count` sorted strings, each read with `at`, or -1. */
function binarySearch(count: number, at: (index: number) => string, wanted: string): number {
  let low = 0
  let high = count - 1
  while (low <= high) {
    const middle = (low + high) >>> 1
    const file = at(middle)
    if (file === wanted) return middle
    if (file < wanted) low = middle + 1
    else high = middle - 1
  }
  return -1
}

/** What the manifest records of the file at `index` of `files`; a null leaves the field out. */
export function entryAt(details: ManifestColumns, index: number): ManifestEntry {
  const entry: ManifestEntry = {}
  const size = details.size[index]
  const md5 = details.md5[index]
  const contentType = details.contentType[index]
  const cacheControl = details.cacheControl[index]
  const etag = details.etag?.[index]
  const version = details.version?.[index]
  if (size !== null && size !== undefined) entry.size = size
  if (contentType !== null && contentType !== undefined) entry.contentType = details.contentTypes[contentType]
  if (cacheControl !== null && cacheControl !== undefined) entry.cacheControl = details.cacheControls[cacheControl]
  if (md5 !== null && md5 !== undefined) entry.md5 = md5
  if (etag !== undefined && etag !== null) entry.etag = etag
  if (version !== undefined && version !== null) entry.version = version
  return entry
}

/** What the manifest records of `relpath`: undefined when it names no such file or records no details. */
export function entryOf(manifest: Pick<Manifest, 'files' | 'details'> | undefined, relpath: string): ManifestEntry | undefined {
  if (manifest?.details === undefined) return undefined
  const index = indexIn(manifest.files, relpath)
  return index === -1 ? undefined : entryAt(manifest.details, index)
}

/**
 * Collects the details of `count` files into columns; `add` them in the order of the manifest's
 * `files`. Each column is allocated once at its size: grown a push at a time, a 100,000-file
 * manifest's columns left ~10 MB of outgrown copies for a full collection to free.
 */
export function columnsBuilder(count: number): { add(entry: ManifestEntry): void; columns(): ManifestColumns } {
  const tables = { contentTypes: new Map<string, number>(), cacheControls: new Map<string, number>() }
  const tableIndex = (table: Map<string, number>, value: string | undefined) => {
    if (value === undefined) return null
    if (!table.has(value)) table.set(value, table.size)
    return table.get(value)!
  }
  const column = <T>() => new Array<T | null>(count)
  const columns: Required<ManifestColumns> = {
    size: column(),
    md5: column(),
    contentType: column(),
    contentTypes: [],
    cacheControl: column(),
    cacheControls: [],
    etag: column(),
    version: column(),
  }
  let next = 0
  return {
    add(entry) {
      columns.size[next] = entry.size ?? null
      columns.md5[next] = entry.md5 ?? null
      columns.contentType[next] = tableIndex(tables.contentTypes, entry.contentType)
      columns.cacheControl[next] = tableIndex(tables.cacheControls, entry.cacheControl)
      columns.etag[next] = entry.etag ?? null
      columns.version[next] = entry.version ?? null
      next++
    },
    columns() {
      const { etag, version, ...rest } = columns
      // Columns that would hold nothing but nulls are left out.
      return {
        ...rest,
        contentTypes: [...tables.contentTypes.keys()],
        cacheControls: [...tables.cacheControls.keys()],
        ...(etag.every((value) => value === null) ? {} : { etag }),
        ...(version.every((value) => value === null) ? {} : { version }),
      }
    },
  }
}

/** A map of entries keyed by relpath (what earlier versions wrote) as columns parallel to `files`. */
export function columnsOf(files: readonly string[], entries: Readonly<Record<string, ManifestEntry>>): ManifestColumns {
  const builder = columnsBuilder(files.length)
  for (const relpath of files) builder.add(Object.hasOwn(entries, relpath) ? entries[relpath]! : {})
  return builder.columns()
}

const isEntry = (entry: unknown): boolean =>
  isRecord(entry) &&
  (entry.size === undefined || (Number.isSafeInteger(entry.size) && (entry.size as number) >= 0)) &&
  (entry.contentType === undefined || typeof entry.contentType === 'string') &&
  (entry.cacheControl === undefined || typeof entry.cacheControl === 'string')

/**
 * Reads both formats valpop has written: the object and the older bare array of relpaths. The
 * timestamp of a bare array (or an object without one) comes from the key.
 *
 * Anything a reader could act on wrongly is refused with `MANIFEST_UNREADABLE`: a file path that
 * could escape (prune would delete what it names), a timestamp a day off its key's or a key dated
 * in the future (a build dated in 3000 would stay the newest for ever and push every real build
 * out of `keep`), fields of the wrong type, more than `MANIFEST_MAX_BYTES`.
 */
export function parseManifest(text: string, key: string, timestampFromKey: number, now = Math.floor(Date.now() / 1000)): Manifest {
  if (Buffer.byteLength(text) > MANIFEST_MAX_BYTES) throw unreadable(key, `it holds more than the ${formatBytes(MANIFEST_MAX_BYTES)} a manifest may`)
  if (nestsDeeperThan(text, MAX_DEPTH)) throw unreadable(key, `it nests more than ${MAX_DEPTH} levels deep`)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw unreadable(key, 'it is not JSON', error)
  }
  const manifest = Array.isArray(value) ? { files: value } : value
  if (!isRecord(manifest)) throw unreadable(key, 'it is neither an object nor an array')
  const problem = fieldProblem(manifest, timestampFromKey, now)
  if (problem) throw unreadable(key, problem)
  const { details, entries, ...fields } = manifest
  const files = manifest.files as string[]
  return {
    ...fields,
    files,
    timestamp: (manifest.timestamp as number | undefined) ?? timestampFromKey,
    ...(details !== undefined
      ? { details: details as ManifestColumns }
      : entries !== undefined
        ? { details: columnsOf(files, entries as Record<string, ManifestEntry>) }
        : {}),
  }
}

/**
 * Arrays longer than this are written a slice at a time: no string of the whole manifest is ever
 * made, and each piece (~36 KB for a slice of MD5s) is young garbage, collected by a scavenge. At
 * 4,096 a slice's text went to V8's large-object space, which only a full collection frees: a
 * 100,000-file manifest grew the heap by ~35 MB of them.
 */
const SLICE = 1024

/** `value` as JSON, in pieces: long arrays a slice at a time, objects field by field. */
function* jsonPieces(value: unknown): Generator<string> {
  if (Array.isArray(value) && value.length > SLICE) {
    for (let start = 0; start < value.length; start += SLICE)
      yield `${start === 0 ? '[' : ','}${JSON.stringify(value.slice(start, start + SLICE)).slice(1, -1)}`
    yield ']'
  } else if (isRecord(value) && Object.values(value).some((field) => isRecord(field) || (Array.isArray(field) && field.length > SLICE))) {
    let first = true
    for (const [name, field] of Object.entries(value)) {
      if (field === undefined) continue
      yield `${first ? '{' : ','}${JSON.stringify(name)}:`
      yield* jsonPieces(field)
      first = false
    }
    yield first ? '{}' : '}'
  } else yield JSON.stringify(value)
}

/** The manifest as stored, in pieces of text: JSON, `details` last, and a newline. */
export function* manifestPieces(manifest: Manifest): Generator<string> {
  const { details, ...fields } = manifest
  yield* jsonPieces(details === undefined ? fields : { ...fields, details })
  yield '\n'
}

/** The manifest as stored, in one buffer: a first pass counts the bytes, a second encodes the pieces into it. */
export function serializeManifest(manifest: Manifest): Buffer {
  let bytes = 0
  for (const piece of manifestPieces(manifest)) bytes += Buffer.byteLength(piece)
  const body = Buffer.allocUnsafe(bytes)
  let offset = 0
  for (const piece of manifestPieces(manifest)) offset += body.write(piece, offset)
  return body
}

function unreadable(key: string, why: string, cause?: unknown): PushCacheError {
  return new PushCacheError('MANIFEST_UNREADABLE', `Manifest ${key} cannot be read: ${why}. Nothing was pruned; fix or delete that key.`, { cause })
}
