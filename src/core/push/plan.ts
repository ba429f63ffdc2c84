import { extname, posix } from 'node:path'
import { contentType as mimeContentType } from 'mime-types'
import picomatch from 'picomatch'
import type { ResolvedCoreOptions } from '../model/options'
import type { Layout } from '../store/layout'

/** A file of the build as found on disk. */
export interface BuildFile {
  /** Relative to the output root, `/`-separated. */
  relpath: string
  /** Absolute path on disk. */
  path: string
  size: number
  /**
   * Whether the bundler named this file with a content hash (webpack/Rspack `assetInfo.immutable`,
   * a `[hash]` in the Rollup/Vite/Rolldown/esbuild file name pattern that produced it). Unset where
   * no bundler speaks (the CLI). It only adds to the name's verdict ({@link hasContentHash}), so a
   * file the CLI pushes gets the same headers as when the plugin pushes it.
   */
  immutable?: boolean
}

export interface PlannedUpload extends BuildFile {
  readonly key: string
  contentType: string
  cacheControl: string
  /** Published after every other file of the build landed. */
  entrypoint: boolean
  /** Hex MD5 of the bytes, once hashed (the plan hashes only files whose name the store holds). */
  md5?: string
  /**
   * The version tag of the key that holds the file's bytes: the one the store gave it when this
   * push wrote it, or the one listed for a file the plan found unchanged. A Map of them by relpath
   * held ~40 B more per file.
   */
  etag?: string
  /** Versioned stores: the build whose key holds the bytes of a file the plan found unchanged. */
  version?: number
}

/** What the planned files of one kind share: their headers (a handful of pairs per build), and how a relpath makes a key. */
interface Kind {
  readonly contentType: string
  readonly cacheControl: string
  readonly entrypoint: boolean
  readonly keyOf: (relpath: string) => string
}

/**
 * A planned file as {@link planUpload} makes them: one shape for all, every field in the object
 * (`md5` and `etag` too, set later), what the build file says read from it, the headers from its
 * {@link Kind}, and the key made from the relpath when asked. A key and copies held per file were
 * ~180 B more each (18 MB for 100,000 files), the headers in fields of their own 24 B; each is
 * read a few times per file at most.
 */
class Planned implements PlannedUpload {
  md5: string | undefined = undefined
  etag: string | undefined = undefined
  version: number | undefined = undefined

  constructor(
    private readonly file: BuildFile,
    private readonly kind: Kind,
  ) {}

  get relpath(): string {
    return this.file.relpath
  }

  get path(): string {
    return this.file.path
  }

  get size(): number {
    return this.file.size
  }

  get immutable(): boolean | undefined {
    return this.file.immutable
  }

  get contentType(): string {
    return this.kind.contentType
  }

  get cacheControl(): string {
    return this.kind.cacheControl
  }

  get entrypoint(): boolean {
    return this.kind.entrypoint
  }

  get key(): string {
    return this.kind.keyOf(this.file.relpath)
  }
}

export interface UploadPlan {
  /** Everything but the entrypoints, in a stable order. */
  assets: PlannedUpload[]
  /** Published last, in the order the options name them. */
  entrypoints: PlannedUpload[]
  /** Files that `include`/`exclude` left out. */
  excluded: BuildFile[]
}

/** Files whose name says "fetch me often": valpop's list, plus any `app-info*.json`. */
const SHORT_CACHED = /(^|\/)(index\.html|fed-mods\.json|app-info[^/]*\.json)$/

/** Words as people write them in file names: `SemiBold`, `BackgroundImage`, `legacy`, `Bsle-cxw`. */
const WORDS = /^[A-Z]?[a-z]+(?:[A-Z][a-z]+)*(?:[-_][A-Z]?[a-z]+(?:[A-Z][a-z]+)*)*$/

/**
 * A token that only a hash function writes: digits and letters interleaved (`3f2a1b9c0d`,
 * `BxY7_a9Q`, not `material24`), or mixed case that is not words (`DhTRlqEC`, `B-RNKoMk`, not
 * `SemiBold`). All-letter upper-case tokens (`LAIVXYRB`) and all-digit ones are left out: they are
 * as often words or dates.
 */
const looksRandom = (token: string) =>
  /^[A-Za-z0-9_-]{8,64}$/.test(token) &&
  (/[A-Za-z].*\d.*[A-Za-z]|\d.*[A-Za-z].*\d/.test(token) || (!/\d/.test(token) && /[A-Z]/.test(token) && /[a-z]/.test(token) && !WORDS.test(token)))

/**
 * The guess for a file no bundler vouched for (the CLI): a content hash in the name, as bundlers
 * write them: a `.`-separated token after the name (webpack/Rspack `[name].[contenthash]`) or the 8
 * characters after a `-` (Vite, Rollup, Rolldown base64url `[name]-[hash]`, which may itself hold
 * `-` or `_`; esbuild base32). It errs towards "no": a wrongly short cache costs a request, a
 * wrongly immutable one serves a stale file for a year (`fonts/OpenSans-SemiBold.woff2`).
 */
export function hasContentHash(relpath: string): boolean {
  const tokens = posix.basename(relpath).split('.').slice(0, -1)
  return tokens.some((token, index) => (index > 0 && looksRandom(token)) || looksRandom(/-([A-Za-z0-9_-]{8})$/.exec(token)?.[1] ?? ''))
}

/** By extension: mime-types builds a new string on every call, one per file of a build otherwise. */
const contentTypes = new Map<string, string>()

export function contentTypeOf(relpath: string): string {
  const extension = extname(relpath)
  let type = contentTypes.get(extension)
  if (type === undefined) {
    type = mimeContentType(extension) || 'application/octet-stream'
    contentTypes.set(extension, type)
  }
  return type
}

/**
 * One rule for the plugin and the CLI: a name that plainly holds a hash is immutable whoever pushes
 * it (webpack's `main.3f2a9c1b.js.LICENSE.txt`, which webpack does not mark `immutable`, included);
 * `immutable`, what a bundler said ({@link BuildFile.immutable}), can only add hashes the name hides.
 */
export function cacheControlOf(relpath: string, options: ResolvedCoreOptions['cacheControl'], entrypoints: readonly string[], immutable = false): string {
  for (const [glob, value] of Object.entries(options.rules)) if (picomatch(glob, { dot: true })(relpath)) return value
  if (entrypoints.includes(relpath) || SHORT_CACHED.test(relpath)) return options.short
  if (immutable || hasContentHash(relpath)) return options.immutable
  return options.default
}

/**
 * Which file goes where, with which headers, in which order. Pure: the same files and options
 * always give the same plan, so it is tested without any store.
 */
export function planUpload(
  files: readonly BuildFile[],
  options: Pick<ResolvedCoreOptions, 'app' | 'timestamp' | 'include' | 'exclude' | 'entrypoint' | 'cacheControl'>,
  layout: Layout,
): UploadPlan {
  const included = picomatch(options.include, { dot: true })
  const excludedByGlob = picomatch(options.exclude, { dot: true })
  const plan: UploadPlan = { assets: [], entrypoints: [], excluded: [] }
  const keyOf = (relpath: string) => layout.dataKey(options.app, options.timestamp, relpath)
  const kinds = new Map<string, Kind>()
  const kindOf = (contentType: string, cacheControl: string, entrypoint: boolean) => {
    const name = `${contentType}\n${cacheControl}\n${entrypoint}`
    const kind = kinds.get(name) ?? { contentType, cacheControl, entrypoint, keyOf }
    kinds.set(name, kind)
    return kind
  }
  const sorted = [...files].sort((a, b) => (a.relpath < b.relpath ? -1 : a.relpath > b.relpath ? 1 : 0))
  for (const file of sorted) {
    if (!included(file.relpath) || (options.exclude.length > 0 && excludedByGlob(file.relpath))) {
      plan.excluded.push(file)
      continue
    }
    const entrypoint = options.entrypoint.includes(file.relpath)
    const cacheControl = cacheControlOf(file.relpath, options.cacheControl, options.entrypoint, file.immutable)
    const upload = new Planned(file, kindOf(contentTypeOf(file.relpath), cacheControl, entrypoint))
    ;(entrypoint ? plan.entrypoints : plan.assets).push(upload)
  }
  plan.entrypoints.sort((a, b) => options.entrypoint.indexOf(a.relpath) - options.entrypoint.indexOf(b.relpath))
  return plan
}
