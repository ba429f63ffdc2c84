import { isAbsolute, posix, relative, resolve, sep } from 'node:path'
import { describeError, PushCacheError } from '../core/model/errors'
import { collectFiles, toPosix } from '../core/push/collect-files'
import type { BuildFile } from '../core/push/plan'
import { createLogger, type Logger } from '../core/util/logger'
import { checkOptions, type Options, type ResolvedOptions, resolveOptions } from '../options'
import { checkStore, diagnose, storeKind } from '../stores'
import { pushFiles } from './push-files'

/** A file a bundler wrote, as its adapter reports it. */
export interface EmittedFile {
  /** Relative to the output directory. */
  name: string
  /** The bundler named it with a content hash (see `BuildFile.immutable`). */
  immutable: boolean
}

/** What the adapter knows about the build that just ended. */
export interface BuildContext {
  /** A rebuild in watch mode. */
  watchMode: boolean
  /** The bundler's mode, where it has one (`production`, `development`). */
  mode?: string
}

/**
 * The one piece every adapter shares: collect what a build wrote (possibly over several outputs),
 * then push it once when the build is over. Failures come back as one clean error for the adapter
 * to report the bundler's way (webpack `compilation.errors`, Rollup `this.error`, esbuild `errors`).
 */
export interface PushSession {
  readonly logger: Logger
  /** A build starts: forget the last one's outputs and stamp this one's start. Throws what the config got wrong (an option, the store, no `app`). */
  start(): void
  /** Files a build wrote to `outDir`. */
  collect(outDir: string, files: Iterable<EmittedFile>): void
  /** The build is over and succeeded: push what was collected; resolves to the error to report, if any. */
  finish(build: BuildContext): Promise<PushCacheError | undefined>
  /** A dev server serves the build: nothing is pushed, which the log says once, with what the config got wrong, if anything. */
  devServer(): void
}

/** The options, or the first thing wrong with them, the store included (see `checkStore`). */
function check(userOptions: Options | undefined, resolve: typeof checkOptions, debug: boolean): ResolvedOptions | PushCacheError {
  try {
    const options = resolve(userOptions)
    checkStore(options)
    return options
  } catch (error) {
    return debug ? (error as PushCacheError) : withoutStack(error as PushCacheError)
  }
}

/**
 * A session for the plugin's options, checked now (when the config loads); undefined when `disable`
 * is set. A wrong option does not throw here, since a dev server, which pushes nothing, must still
 * start: a build throws it from its first hook, before it bundles, and a dev server warns once.
 */
export function createPushSession(userOptions: Options | undefined, tag: string): PushSession | undefined {
  if (userOptions?.disable) return undefined
  const debug = userOptions?.debug ?? process.env.PUSH_CACHE_DEBUG === '1'
  const logger = createLogger(tag, debug)
  // What a dev server would warn about; a missing `app` is not among them, it needs none.
  const served = check(userOptions, checkOptions, debug)
  const built = served instanceof Error ? served : check(userOptions, resolveOptions, debug)
  const once = new Set<string>()
  const logOnce = (message: string, log = logger.info) => {
    if (!once.has(message)) log(message)
    once.add(message)
  }
  let outputs = new Map<string, Map<string, boolean>>()
  let startedAt = Date.now()
  let lastPushed = 0

  return {
    logger,
    start() {
      outputs = new Map()
      startedAt = Date.now()
      if (built instanceof Error) throw built
    },
    collect(outDir, files) {
      const dir = resolve(outDir)
      const known = outputs.get(dir) ?? new Map<string, boolean>()
      for (const file of files) known.set(file.name, file.immutable)
      outputs.set(dir, known)
    },
    async finish({ watchMode, mode }) {
      const collected = outputs
      outputs = new Map()
      if (built instanceof Error) return built
      const options = built
      if (collected.size === 0) return undefined
      if (watchMode && !options.watch) {
        logOnce('watch mode: builds are not pushed (set `watch: true` to push every rebuild)')
        return undefined
      }
      if (mode === 'development') logOnce("pushing a development build (mode: 'development'); `disable` keeps such builds out of the store")
      // Each build, and each rebuild of a watched one, is stamped with its own start (unless a
      // timestamp was given), and a rebuild within the same second with the next one: readers and
      // `push-cache watch` take a build only when it is newer than the one they hold. The options
      // themselves were checked when the config loaded.
      const buildOptions = resolveOptions(userOptions, process.env, () => Math.max(startedAt, (lastPushed + 1) * 1000))
      try {
        await pushFiles({ files: await collectBuild(collected, buildOptions.scan, logger), options: buildOptions, logger })
        lastPushed = buildOptions.timestamp
        return undefined
      } catch (error) {
        const failure = reportable(error, options)
        if (options.failOnError) return failure
        logger.error(`${failure.message} The build goes on because \`failOnError\` is false.`)
        return undefined
      }
    },
    devServer() {
      logOnce('dev server: nothing is pushed, even when it writes to disk; a build (`vite build`, `webpack`, `rsbuild build`, `fec build`) pushes')
      if (served instanceof Error) logOnce(`${served.message} The dev server runs; a build would fail.`, logger.warn)
    },
  }
}

/** Bundlers print an error's stack, which says nothing to a user about their build: only the message stays. */
function withoutStack<T extends Error>(error: T): T {
  error.stack = `${error.name}: ${error.message}`
  return error
}

/** A store's own error, anywhere along the causes, already says its fix (`aws s3 mb` for a missing bucket): one is enough. */
function saysItsFix(error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth++)
    if (cause instanceof PushCacheError && (cause.code === 'STORE_UNREACHABLE' || cause.code === 'INVALID_OPTION')) return true
  return false
}

/**
 * One line a bundler can print as it is: what failed, the store, and the fix; the stack and the
 * `cause` (which webpack prints too) only when `debug` asks for them.
 */
function reportable(error: unknown, options: ResolvedOptions): PushCacheError {
  const message = error instanceof PushCacheError ? error.message : describeError(error)
  const fix = saysItsFix(error) ? undefined : diagnose(error, storeKind(options.store), 'the `store` option')?.fix
  const code = error instanceof PushCacheError ? error.code : 'UPLOAD_FAILED'
  const failure = new PushCacheError(code, fix && !message.includes(fix) ? `${message} ${fix}` : message, options.debug ? { cause: error } : undefined)
  return options.debug ? failure : withoutStack(failure)
}

/**
 * The files of one build, relative to one directory: the output directory, or the common directory
 * of several (Rollup's `output: [...]`), listing only what lies in the output directories themselves.
 * A file is immutable only when its bundler said so: files it did not emit (Vite's `public/`, a
 * copy made by another plugin) are not, except the source map of a file that is (`main.3f2a.js.map`).
 */
async function collectBuild(outputs: Map<string, Map<string, boolean>>, scan: ResolvedOptions['scan'], logger: Logger): Promise<BuildFile[]> {
  const root = [...outputs.keys()].reduce(commonDirectory)
  const perOutput = await Promise.all(
    [...outputs].map(async ([dir, emitted]) =>
      (await collectFiles(dir, scan === 'outDir' ? undefined : [...emitted.keys()], logger)).map(({ relpath, path, size }) => ({
        relpath,
        path,
        size,
        immutable: emitted.get(relpath) ?? false,
      })),
    ),
  )
  const files = perOutput.flat().map((file) => ({ ...file, relpath: toPosix(relative(root, file.path)) }))
  const hashed = new Set(files.filter((file) => file.immutable).map((file) => posix.basename(file.relpath)))
  for (const file of files) if (file.relpath.endsWith('.map') && hashed.has(posix.basename(file.relpath).slice(0, -'.map'.length))) file.immutable = true
  return files
}

function commonDirectory(a: string, b: string): string {
  const outside = (dir: string) => {
    const rel = relative(dir, b)
    return rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)
  }
  let dir = a
  while (outside(dir)) dir = resolve(dir, '..')
  return dir
}
