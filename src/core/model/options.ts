import { parseDuration } from '../util/duration'
import { invalidOption } from './errors'
import { FUTURE_TOLERANCE_SECONDS } from './manifest'

export interface PruneOptions {
  /**
   * A build can die only when it is older than this (`90s`, `30m`, `48h`, `7d`).
   * @default '48h'
   */
  olderThan?: string
  /**
   * The newest `keep` builds always survive, however old. At least 1: the latest build is never pruned.
   * @default 3
   */
  keep?: number
}

/** Tell servers that serve the cache about each new build, the moment it is complete. */
export interface AnnounceOptions {
  /**
   * Base URL of a vwatch server's write port (`http://vwatch:8008`): after a successful push, `PUT
   * /v1/versions/<name>` with the build timestamp as the version, so its long-pollers wake at once.
   * Basic-auth credentials may ride in the URL (`http://user:pass@vwatch:8008`); they are never printed.
   * @default process.env.PUSH_CACHE_ANNOUNCE_VWATCH (no vwatch announce)
   */
  vwatch?: string
  /**
   * The vwatch name of this app's builds (may contain `/`).
   * @default `push-cache/<app>`
   */
  name?: string
  /**
   * Valkey/Redis channel to `PUBLISH` the build on, on the store's own server; Valkey store only.
   * @default undefined (no PUBLISH)
   */
  channel?: string
}

export interface CacheControlOptions {
  /**
   * For entrypoints and other files that must refresh fast (`fed-mods.json`, `index.html`, `app-info*.json`).
   * @default 'public, max-age=60, stale-while-revalidate=300'
   */
  short?: string
  /**
   * For content-hashed file names (`main.3f2a9c1b.js`, `index-BxY7_a9Q.js`).
   * @default 'public, max-age=31536000, immutable'
   */
  immutable?: string
  /**
   * For everything else.
   * @default 'public, max-age=86400'
   */
  default?: string
  /**
   * Your own rules, glob (picomatch, on the path relative to the output root) to header value;
   * the first match wins over every built-in rule.
   * @default {}
   */
  rules?: Record<string, string>
}

/**
 * What the push, prune, pop and watch take, whatever the store. Each store's own settings are in
 * its driver (`stores/*-options.ts`); `src/options.ts` puts them together into the plugin's `Options`.
 */
export interface CoreOptions {
  /**
   * The application's name: the namespace of its keys (`data/<app>/...`). Letters, digits, `.`, `_`, `-`; at most 128.
   * @default process.env.PUSH_CACHE_APP
   */
  app?: string
  /**
   * Where to push: `s3://bucket[/root]`, `valkey://host:6379[/db]` (`redis://`, `valkeys://`, `rediss://`,
   * `valkey+cluster://`), `file:./dir` or a plain directory path.
   * @default process.env.PUSH_CACHE_STORE ?? './.push-cache' (a local directory: no server needed)
   */
  store?: string
  /**
   * Files that are published last, and only after every other file landed (the module federation entry map).
   * @default ['fed-mods.json']
   */
  entrypoint?: string | string[]
  /**
   * Globs (picomatch, relative to the output root) of files to push.
   * @default ['**']
   */
  include?: string | string[]
  /**
   * Globs of files never to push (picomatch, relative to the output root; dotfiles match `*` too).
   * @default []
   */
  exclude?: string | string[]
  /**
   * The build's timestamp in seconds: the manifest's name and the version of its Valkey keys.
   * @default process.env.BUILD_TIMESTAMP ?? process.env.SOURCE_DATE_EPOCH ?? the build's start time
   */
  timestamp?: number
  /**
   * The container image this build ships in, recorded in the manifest (valpop's `image`).
   * @default process.env.PUSH_CACHE_IMAGE
   */
  image?: string
  /** `Cache-Control` of every pushed file. @default the `cacheControl.*` defaults below */
  cacheControl?: CacheControlOptions
  /**
   * Uploads in flight at once, fixed, at most 1024. Unset, a push starts from the store's default,
   * on S3 widened by the round trip its first requests took (× round trip / 25 ms: 128 at 100 ms),
   * then doubles it while each doubling raises the throughput (a long link), up to 256, halving it
   * when a request has to be retried; `pop` and `watch` start at 64 downloads, widened and probing
   * the same way. Whatever the count, at most 16 MiB of whole files are held in memory at a time
   * (larger files stream; on S3 beside them at most four 8 MiB parts).
   * @default 32 (S3, probing up to 256), 16 (local directory), 512 (Valkey: writes share pipelined round trips)
   */
  concurrency?: number
  /**
   * Attempts after the first for a request that failed transiently (network, timeout, 5xx, 429,
   * Valkey `LOADING`/`READONLY`), with exponential backoff.
   * @default 3
   */
  retries?: number
  /**
   * Milliseconds to open a connection to the store (TCP and TLS; for Valkey until the server is
   * ready for commands, reconnects included).
   * @default process.env.PUSH_CACHE_CONNECT_TIMEOUT ?? 5000
   */
  connectTimeout?: number
  /**
   * Milliseconds one request may take, from sending it to the last byte of its answer (an S3
   * request or multipart part with its body, a Valkey command and its reply). A request that runs
   * out of time is retried like any transient failure; raise it for files that take longer to transfer.
   * @default process.env.PUSH_CACHE_REQUEST_TIMEOUT ?? 30000
   */
  requestTimeout?: number
  /**
   * Prune aged-out builds of this app after a successful push; `false` leaves every build.
   * @default false
   */
  prune?: PruneOptions | false
  /**
   * After a successful push (entrypoints and manifest written), announce the build on vwatch
   * and/or a Valkey channel. A failed announce is a warning: the build is in the store either way.
   * @default {} (announce nothing)
   */
  announce?: AnnounceOptions
  /**
   * Which files make up the build: `'outDir'` walks the output directory after the bundler wrote it
   * (catches files copied in by other plugins, such as Vite's `public/`); `'emitted'` takes only the
   * bundler's own list of emitted files.
   * @default 'outDir'
   */
  scan?: 'outDir' | 'emitted'
  /**
   * Push on every rebuild in watch mode (`vite build --watch`, `rollup -w`, `webpack --watch`).
   * Dev servers (`vite`, `webpack serve`, Rspack's and Rsbuild's) never push, whatever this says,
   * even when they write to disk (`devMiddleware.writeToDisk`).
   * @default false
   */
  watch?: boolean
  /**
   * A failed push fails the build. With `false` the failure is logged as an error and the build
   * succeeds; in both cases no entrypoint and no manifest of a failed push is written.
   * @default true
   */
  failOnError?: boolean
  /**
   * Upload every file, even those the store already holds with the same content and headers.
   * @default false
   */
  force?: boolean
  /**
   * Plan and print, but write nothing to the store.
   * @default false
   */
  dryRun?: boolean
  /**
   * Turn the plugin into a no-op.
   * @default false
   */
  disable?: boolean
  /**
   * Log the plan's decision for every file (new, changed and what differs, unchanged and skipped,
   * left out by `include`/`exclude`), every file written, and retried requests.
   * @default process.env.PUSH_CACHE_DEBUG === '1'
   */
  debug?: boolean
}

export interface ResolvedCoreOptions {
  app: string
  store: string
  entrypoint: string[]
  include: string[]
  exclude: string[]
  timestamp: number
  image?: string
  cacheControl: Required<CacheControlOptions>
  /** Undefined: the store's own default. */
  concurrency?: number
  retries: number
  connectTimeout: number
  requestTimeout: number
  prune: { olderThanSeconds: number; keep: number } | false
  announce: { vwatch?: string; name: string; channel?: string }
  scan: 'outDir' | 'emitted'
  watch: boolean
  failOnError: boolean
  force: boolean
  dryRun: boolean
  disable: boolean
  debug: boolean
}

const DEFAULT_STORE = './.push-cache'
export const DEFAULT_CACHE_CONTROL: Required<CacheControlOptions> = {
  short: 'public, max-age=60, stale-while-revalidate=300',
  immutable: 'public, max-age=31536000, immutable',
  default: 'public, max-age=86400',
  rules: {},
}

const APP_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/
/** The app is a directory name in the local store and part of every key: well inside the 255 bytes a file name may have. */
const MAX_APP_LENGTH = 128
/**
 * Each transfer in flight holds a socket and often an open file: far more than this ends in
 * EMFILE under the usual limit of 1024 open files, and buys no speed.
 */
const MAX_CONCURRENCY = 1024

const toArray = (value: string | string[] | undefined, fallback: string[]): string[] =>
  value === undefined ? fallback : Array.isArray(value) ? value : [value]

function envTimestamp(env: NodeJS.ProcessEnv): number | undefined {
  for (const name of ['BUILD_TIMESTAMP', 'SOURCE_DATE_EPOCH'] as const) {
    const raw = env[name]
    if (raw === undefined || raw === '') continue
    const value = Number(raw)
    if (!Number.isSafeInteger(value) || value < 0)
      throw invalidOption(name, `is ${JSON.stringify(raw)}, not a whole number of seconds`, `Set it to a Unix time such as ${Math.floor(Date.now() / 1000)}.`)
    return value
  }
  return undefined
}

function positiveInteger(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max)
    throw invalidOption(name, `is ${value}`, `Use a whole number of at least ${min}${max < Number.MAX_SAFE_INTEGER ? ` and at most ${max}` : ''}.`)
  return value
}

function resolveAnnounce(options: AnnounceOptions = {}, app: string, env: NodeJS.ProcessEnv): ResolvedCoreOptions['announce'] {
  const vwatch = options.vwatch ?? (env.PUSH_CACHE_ANNOUNCE_VWATCH || undefined)
  if (vwatch !== undefined && !/^https?:$/.test(URL.parse(vwatch)?.protocol ?? ''))
    throw invalidOption('announce.vwatch', `is ${JSON.stringify(vwatch)}`, "Use the base URL of vwatch's write port, e.g. `http://vwatch:8008`.")
  // Every segment lands in a URL path, where an empty, `.` or `..` segment would name another version.
  if (options.name?.split('/').some((segment) => ['', '.', '..'].includes(segment) || /[\s\p{Cc}]/u.test(segment)))
    throw invalidOption(
      'announce.name',
      `is ${JSON.stringify(options.name)}`,
      'Use `/`-separated segments without spaces, empty, `.` or `..` segments, e.g. `push-cache/inventory`.',
    )
  if (options.channel !== undefined && !/^\S+$/.test(options.channel))
    throw invalidOption('announce.channel', `is ${JSON.stringify(options.channel)}`, 'Name a channel without spaces, e.g. `push-cache:builds`.')
  return { vwatch, name: options.name ?? `push-cache/${app}`, channel: options.channel }
}

/** Deadlines of every network call: seconds, not minutes, so a stalled store fails a CI job fast. */
export const DEFAULT_TIMEOUTS = { connectTimeout: 5000, requestTimeout: 30_000 } as const

/** What a store needs to bound its network calls. */
export type StoreTimeouts = Pick<ResolvedCoreOptions, 'connectTimeout' | 'requestTimeout'>

/** A timeout in milliseconds from the option, else from its environment variable, else the default. */
function timeout(name: keyof typeof DEFAULT_TIMEOUTS, variable: string, value: number | undefined, env: NodeJS.ProcessEnv): number {
  const raw = env[variable]
  if (value === undefined && raw !== undefined && raw !== '') {
    if (!/^\d+$/.test(raw))
      throw invalidOption(variable, `is ${JSON.stringify(raw)}, not a whole number of milliseconds`, `Set it to a number such as ${DEFAULT_TIMEOUTS[name]}.`)
    return positiveInteger(variable, Number(raw), 1)
  }
  return positiveInteger(name, value ?? DEFAULT_TIMEOUTS[name], 1)
}

/** Merges defaults and env fallbacks into a fully typed object, and checks every value once. */
export function resolveCoreOptions(options: CoreOptions = {}, env: NodeJS.ProcessEnv = process.env, now: () => number = Date.now): ResolvedCoreOptions {
  const resolved = checkCoreOptions(options, env, now)
  if (!resolved.disable && !resolved.app)
    throw invalidOption(
      'app',
      'is missing',
      "Name the application, e.g. `pushCache({ app: 'inventory' })`, `--app inventory` on the command line, or PUSH_CACHE_APP=inventory.",
    )
  return resolved
}

/**
 * {@link resolveCoreOptions} without the one check that waits for a build: `app` may be missing (`''`).
 * The plugin checks everything else when the config loads, so a wrong value fails before any
 * bundling, while a dev server, which pushes nothing, needs no `app` at all.
 */
export function checkCoreOptions(options: CoreOptions = {}, env: NodeJS.ProcessEnv = process.env, now: () => number = Date.now): ResolvedCoreOptions {
  const disable = options.disable ?? false
  const app = options.app ?? env.PUSH_CACHE_APP ?? ''
  if (app && (!APP_NAME.test(app) || app.includes('..')))
    throw invalidOption('app', `is ${JSON.stringify(app)}`, 'Use letters, digits, `.`, `_` and `-` only (no `/`, `:` or `..`).')
  if (app.length > MAX_APP_LENGTH) throw invalidOption('app', `is ${app.length} characters long`, `Use at most ${MAX_APP_LENGTH}.`)
  const image = options.image ?? (env.PUSH_CACHE_IMAGE || undefined)
  // The manifest and `ls` print it on one line.
  if (image !== undefined && /\p{Cc}/u.test(image))
    throw invalidOption(
      'image',
      `is ${JSON.stringify(image)}, with a line break or control character`,
      'Give the image reference alone, e.g. quay.io/org/app:abc123.',
    )

  const timestamp = options.timestamp ?? envTimestamp(env) ?? Math.floor(now() / 1000)
  positiveInteger('timestamp', timestamp, 0)
  // Readers refuse such a build (it would stay the newest for ever); milliseconds are the usual slip.
  if (timestamp > Math.floor(now() / 1000) + FUTURE_TOLERANCE_SECONDS)
    throw invalidOption('timestamp', `is ${timestamp}, more than a day ahead of the clock`, 'Give Unix seconds (`date +%s`), not milliseconds.')

  let prune: ResolvedCoreOptions['prune'] = false
  if (options.prune) {
    const keep = positiveInteger('prune.keep', options.prune.keep ?? 3, 1)
    prune = { olderThanSeconds: parseDuration(options.prune.olderThan ?? '48h', 'prune.olderThan'), keep }
  }

  const announce = resolveAnnounce(options.announce, app, env)

  const scan = options.scan ?? 'outDir'
  if (scan !== 'outDir' && scan !== 'emitted') throw invalidOption('scan', `is ${JSON.stringify(scan)}`, "Use 'outDir' or 'emitted'.")

  return {
    app,
    store: options.store ?? env.PUSH_CACHE_STORE ?? DEFAULT_STORE,
    entrypoint: toArray(options.entrypoint, ['fed-mods.json']),
    include: toArray(options.include, ['**']),
    exclude: toArray(options.exclude, []),
    timestamp,
    image,
    cacheControl: {
      ...DEFAULT_CACHE_CONTROL,
      ...options.cacheControl,
      rules: { ...options.cacheControl?.rules },
    },
    concurrency: options.concurrency === undefined ? undefined : positiveInteger('concurrency', options.concurrency, 1, MAX_CONCURRENCY),
    retries: positiveInteger('retries', options.retries ?? 3, 0),
    connectTimeout: timeout('connectTimeout', 'PUSH_CACHE_CONNECT_TIMEOUT', options.connectTimeout, env),
    requestTimeout: timeout('requestTimeout', 'PUSH_CACHE_REQUEST_TIMEOUT', options.requestTimeout, env),
    prune,
    announce,
    scan,
    watch: options.watch ?? false,
    failOnError: options.failOnError ?? true,
    force: options.force ?? false,
    dryRun: options.dryRun ?? false,
    disable,
    debug: options.debug ?? env.PUSH_CACHE_DEBUG === '1',
  }
}
