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
 * In memory the per-file details are `entries`, keyed by relpath; on the wire they are `details`,
 * columns parallel to `files` (see {@link ManifestColumns}).
 */
export interface Manifest {
  /**
   * Paths relative to the output root, `/`-separated: every file of the build, written by it or
   * found unchanged in the store (then `entries[path].version` names the key on versioned stores).
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
  /** Per-file details, keyed by relpath. */
  entries?: Record<string, ManifestEntry>
  [extra: string]: unknown
}

/**
 * The per-file details as written: one array per field, parallel to `files` (`null`: not known),
 * headers as indexes into the tables of the distinct values. A 100,000-file build writes about
 * 10 MB where a map keyed by relpath took 24 MB: the path is not repeated, nor the headers.
 */
interface ManifestColumns {
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

/** Ours nests three levels (`entries` → path → entry); JSON.parse spends seconds on millions. */
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

/** The columns of `details` as a map keyed by relpath; a null leaves the field out. */
function entriesOf(files: readonly string[], details: ManifestColumns): Record<string, ManifestEntry> {
  const entries: Record<string, ManifestEntry> = {}
  files.forEach((relpath, index) => {
    const entry: ManifestEntry = {}
    const size = details.size[index]
    const md5 = details.md5[index]
    const contentType = details.contentType[index]
    const cacheControl = details.cacheControl[index]
    const etag = details.etag?.[index]
    const version = details.version?.[index]
    if (size !== null) entry.size = size
    if (contentType !== null) entry.contentType = details.contentTypes[contentType]
    if (cacheControl !== null) entry.cacheControl = details.cacheControls[cacheControl]
    if (md5 !== null) entry.md5 = md5
    if (etag !== undefined && etag !== null) entry.etag = etag
    if (version !== undefined && version !== null) entry.version = version
    entries[relpath] = entry
  })
  return entries
}

/** `entries` as columns parallel to `files`; columns that would hold nothing but nulls are left out. */
function columnsOf(files: readonly string[], entries: Readonly<Record<string, ManifestEntry>>): ManifestColumns {
  const tables = { contentTypes: new Map<string, number>(), cacheControls: new Map<string, number>() }
  const indexIn = (table: Map<string, number>, value: string | undefined) => {
    if (value === undefined) return null
    if (!table.has(value)) table.set(value, table.size)
    return table.get(value)!
  }
  const columns: ManifestColumns = { size: [], md5: [], contentType: [], contentTypes: [], cacheControl: [], cacheControls: [], etag: [], version: [] }
  for (const relpath of files) {
    const entry: ManifestEntry = Object.hasOwn(entries, relpath) ? entries[relpath]! : {}
    columns.size.push(entry.size ?? null)
    columns.md5.push(entry.md5 ?? null)
    columns.contentType.push(indexIn(tables.contentTypes, entry.contentType))
    columns.cacheControl.push(indexIn(tables.cacheControls, entry.cacheControl))
    columns.etag!.push(entry.etag ?? null)
    columns.version!.push(entry.version ?? null)
  }
  columns.contentTypes = [...tables.contentTypes.keys()]
  columns.cacheControls = [...tables.cacheControls.keys()]
  if (columns.etag!.every((etag) => etag === null)) delete columns.etag
  if (columns.version!.every((version) => version === null)) delete columns.version
  return columns
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
  const { details, ...fields } = manifest
  const files = manifest.files as string[]
  return {
    ...fields,
    files,
    timestamp: (manifest.timestamp as number | undefined) ?? timestampFromKey,
    ...(details === undefined ? {} : { entries: entriesOf(files, details as ManifestColumns) }),
  }
}

/** The manifest as stored: JSON, `entries` written as the columns of `details`. */
export function serializeManifest(manifest: Manifest): string {
  const { entries, ...fields } = manifest
  return `${JSON.stringify(entries === undefined ? fields : { ...fields, details: columnsOf(manifest.files, entries) })}\n`
}

function unreadable(key: string, why: string, cause?: unknown): PushCacheError {
  return new PushCacheError('MANIFEST_UNREADABLE', `Manifest ${key} cannot be read: ${why}. Nothing was pruned; fix or delete that key.`, { cause })
}
