import { extname, posix } from 'node:path'
import { contentType as mimeContentType } from 'mime-types'
import picomatch from 'picomatch'
import type { Layout } from './layout'
import type { ResolvedOptions } from './options'

/** A file of the build as found on disk. */
export interface BuildFile {
  /** Relative to the output root, `/`-separated. */
  relpath: string
  /** Absolute path on disk. */
  path: string
  size: number
}

export interface PlannedUpload extends BuildFile {
  key: string
  contentType: string
  cacheControl: string
  /** Published after every other file of the build landed. */
  entrypoint: boolean
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

const looksRandom = (token: string) =>
  /^[A-Za-z0-9_-]{8,64}$/.test(token) &&
  ((/\d/.test(token) && /[A-Za-z]/.test(token)) || /^\d+$/.test(token) || /^[A-Z0-9]+$/.test(token) || (/[A-Z]/.test(token) && /[a-z]/.test(token)))

/**
 * A content hash in a file name, as the bundlers write them: a `.`-separated token after the name
 * (webpack/Rspack `[name].[contenthash]`, hex or all digits) or the 8 characters after a `-` (Vite,
 * Rollup, Rolldown base64url `[name]-[hash]`, which may itself hold `-` or `_`; esbuild base32).
 * It must look random: digits and letters, all digits, all upper case, or mixed case. Plain
 * words such as `-component` are not hashes.
 */
export function hasContentHash(relpath: string): boolean {
  const tokens = posix.basename(relpath).split('.').slice(0, -1)
  return tokens.some((token, index) => (index > 0 && looksRandom(token)) || looksRandom(/-([A-Za-z0-9_-]{8})$/.exec(token)?.[1] ?? ''))
}

export function contentTypeOf(relpath: string): string {
  return mimeContentType(extname(relpath)) || 'application/octet-stream'
}

export function cacheControlOf(relpath: string, options: ResolvedOptions['cacheControl'], entrypoints: readonly string[]): string {
  for (const [glob, value] of Object.entries(options.rules)) if (picomatch(glob, { dot: true })(relpath)) return value
  if (entrypoints.includes(relpath) || SHORT_CACHED.test(relpath)) return options.short
  if (hasContentHash(relpath)) return options.immutable
  return options.default
}

/**
 * Which file goes where, with which headers, in which order. Pure: the same files and options
 * always give the same plan, so it is tested without any store.
 */
export function planUpload(
  files: readonly BuildFile[],
  options: Pick<ResolvedOptions, 'app' | 'timestamp' | 'include' | 'exclude' | 'entrypoint' | 'cacheControl'>,
  layout: Layout,
): UploadPlan {
  const included = picomatch(options.include, { dot: true })
  const excludedByGlob = picomatch(options.exclude, { dot: true })
  const plan: UploadPlan = { assets: [], entrypoints: [], excluded: [] }
  const sorted = [...files].sort((a, b) => (a.relpath < b.relpath ? -1 : a.relpath > b.relpath ? 1 : 0))
  for (const file of sorted) {
    if (!included(file.relpath) || (options.exclude.length > 0 && excludedByGlob(file.relpath))) {
      plan.excluded.push(file)
      continue
    }
    const entrypoint = options.entrypoint.includes(file.relpath)
    const upload: PlannedUpload = {
      ...file,
      key: layout.dataKey(options.app, options.timestamp, file.relpath),
      contentType: contentTypeOf(file.relpath),
      cacheControl: cacheControlOf(file.relpath, options.cacheControl, options.entrypoint),
      entrypoint,
    }
    ;(entrypoint ? plan.entrypoints : plan.assets).push(upload)
  }
  plan.entrypoints.sort((a, b) => options.entrypoint.indexOf(a.relpath) - options.entrypoint.indexOf(b.relpath))
  return plan
}
