import { invalidOption } from '../core/model/errors'
import { type BackoffBounds, DEFAULT_BACKOFF } from '../core/util/backoff'
import { parseDuration, parseDurationMs } from '../core/util/duration'
import type { AnnounceOptions, Options, S3Options } from '../options'

/** One flag: its usage (`--app <name>`; without a `<value>` it is a switch), its help line, and whether it may be given more than once. */
export type FlagSpec = [usage: string, description: string, repeatable?: 'repeatable']

/** The parsed flags, by name as typed (`app`, `older-than`): the text given, every text of a repeatable flag, `true` for a switch. */
export type Flags = Record<string, string | string[] | boolean | undefined>

/** Flags by group; each command takes the groups it needs, so a flag is described in one place. Help and parsing both read it. */
export const FLAG_GROUPS = {
  store: [
    ['--app <name>', 'Application name, the namespace of its keys (env PUSH_CACHE_APP)'],
    ['--store <url>', 's3://bucket[/root], valkey://host:6379[/db], redis://..., file:./dir or a directory (env PUSH_CACHE_STORE, default ./.push-cache)'],
    ['--s3-endpoint <url>', 'S3-compatible endpoint such as MinIO (env AWS_ENDPOINT_URL_S3)'],
    ['--s3-region <region>', 'S3 region (default: the AWS SDK chain, AWS_REGION or the region of AWS_PROFILE; us-east-1 for a custom endpoint)'],
    ['--s3-path-style', 'Path-style S3 addressing (the default when an endpoint is set)'],
    [
      '--s3-no-conditional-writes',
      'For a server that ignores If-None-Match/If-Match (older MinIO, s3rver): the writer lock is written and read back, best effort',
    ],
    [
      '--s3-checksums <mode>',
      'when_required: multipart parts carry Content-MD5, not CRC32, for servers that refuse flexible checksums (default when_supported)',
    ],
    ['--connect-timeout <ms>', 'Milliseconds to connect to the store (env PUSH_CACHE_CONNECT_TIMEOUT, default 5000)'],
    ['--request-timeout <ms>', 'Milliseconds one request may take, answer included (env PUSH_CACHE_REQUEST_TIMEOUT, default 30000)'],
    ['--retries <n>', 'Attempts after the first for a request that failed transiently (default 3)'],
  ],
  report: [['--json', 'Print one JSON report on stdout; logs stay on stderr']],
  log: [['--log-format <format>', 'text (default) or json: one JSON object per log line on stderr, for log pipelines (env PUSH_CACHE_LOG_FORMAT)']],
  events: [['--json', 'Print one JSON line on stdout per event (serving, applied, store-lost, ...), and the report when it exits; logs stay on stderr']],
  push: [
    ['--timestamp <secs>', 'Build timestamp in Unix seconds (env BUILD_TIMESTAMP, SOURCE_DATE_EPOCH; default now)'],
    ['--image <ref>', 'Container image of this build; skips the run when the newest build records the same image (env PUSH_CACHE_IMAGE)'],
    ['--include <glob>', 'Push only matching files (repeatable, default **)', 'repeatable'],
    ['--exclude <glob>', 'Never push matching files (repeatable)', 'repeatable'],
    ['--prune-older-than <dur>', 'After the push, prune builds older than this (90s, 48h, 7d)'],
    ['--force', 'Upload every file, even those the store holds with the same content and headers'],
  ],
  announce: [
    ['--announce-vwatch <url>', "After the push, announce the build on vwatch's write port, e.g. http://vwatch:8008 (env PUSH_CACHE_ANNOUNCE_VWATCH)"],
    ['--announce-name <name>', 'The vwatch name to announce under (default push-cache/<app>)'],
    ['--announce-channel <name>', 'After the push, PUBLISH the build on this Valkey channel (Valkey store only)'],
  ],
  entrypoint: [['--entrypoint <file>', 'File written last, once everything else is in place (repeatable, default fed-mods.json)', 'repeatable']],
  concurrency: [
    [
      '--concurrency <n>',
      'Transfers in flight at once, fixed, at most 1024 (default 16; uploads: 32 to S3, × round trip / 25 ms and probing up to 256 on a long link, 512 to Valkey)',
    ],
  ],
  keep: [['--keep <n>', 'The newest N builds always survive (default 3)']],
  olderThan: [['--older-than <dur>', 'Prune builds older than this (90s, 48h, 7d; default 48h)']],
  dryRun: [['--dry-run', 'Show what would be done and write nothing']],
  watch: [
    ['--vwatch <url>', "vwatch's read port (http://vwatch:8080): long-poll it to hear of a new build at once"],
    ['--watch-name <name>', 'The name the builds are announced under in vwatch (default push-cache/<app>)'],
    ['--channel <name>', 'Valkey stores: SUBSCRIBE to this channel to hear of a new build at once (e.g. push-cache:builds)'],
    ['--poll <dur>', "Read the store's newest build this often, whatever the notifiers say (default 5m)"],
    ['--backoff-min <dur>', 'First wait after the store or a notifier failed (default 10s)'],
    ['--backoff-max <dur>', 'Longest wait between retries; waits double up to it, with jitter (default 5m)'],
    ['--once', 'Catch up once and exit (cron jobs, init containers)'],
    ['--listen <addr>', 'Serve /healthz, /readyz and Prometheus /metrics on this address (:9464, 127.0.0.1:9464; off by default)'],
  ],
} satisfies Record<string, FlagSpec[]>

export type FlagGroup = keyof typeof FLAG_GROUPS

/** The last value of a flag given once or more, as the text the user typed. */
function text(value: Flags[string]): string | undefined {
  const last = Array.isArray(value) ? value.at(-1) : value
  return typeof last === 'string' ? last : undefined
}

const list = (value: Flags[string]): string[] | undefined => (value === undefined ? undefined : [value].flat().map(String))

function integer(flag: string, value: Flags[string]): number | undefined {
  const raw = text(value)
  if (raw === undefined) return undefined
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw invalidOption(flag, `is ${JSON.stringify(raw)}`, 'Use a whole number, e.g. 3.')
  return Number(raw)
}

/** Checked here as well as in core so that the message names the flag the user typed. */
function duration(flag: string, value: Flags[string]): string | undefined {
  const raw = text(value)
  if (raw !== undefined) parseDuration(raw, flag)
  return raw
}

function milliseconds(flag: string, value: Flags[string], fallback: number): number {
  const raw = text(value)
  const ms = raw === undefined ? fallback : parseDurationMs(raw, flag)
  if (ms <= 0) throw invalidOption(flag, `is ${JSON.stringify(raw)}`, 'Use a duration above zero, e.g. 500ms, 10s or 5m.')
  return ms
}

function checksums(value: Flags[string]): S3Options['checksums'] {
  const raw = text(value)
  if (raw === undefined || raw === 'when_supported' || raw === 'when_required') return raw
  throw invalidOption('--s3-checksums', `is ${JSON.stringify(raw)}`, 'Use when_supported (the default) or when_required.')
}

/** Drops unset fields so that they do not hide the env fallbacks `resolveOptions` applies. */
const defined = <T extends object>(object: T): T => Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as T

/**
 * The one mapping from command-line flags to core `Options`, for every command. `prune` always
 * prunes, by the defaults of `prune.olderThan` and `prune.keep` unless told otherwise; `populate`
 * prunes only when given an age.
 */
export function toOptions(flags: Flags, command?: string): Options {
  const olderThan = duration('--older-than', flags['older-than']) ?? duration('--prune-older-than', flags['prune-older-than'])
  const keep = integer('--keep', flags.keep)
  // Pruning after a push is asked for by an age; a lone --keep would otherwise be ignored without a word.
  if (keep !== undefined && olderThan === undefined && command !== 'prune')
    throw invalidOption('--keep', 'needs an age', 'Add `--prune-older-than 48h` to populate.')
  return defined<Options>({
    app: text(flags.app),
    store: text(flags.store),
    timestamp: integer('--timestamp', flags.timestamp),
    image: text(flags.image),
    entrypoint: list(flags.entrypoint),
    include: list(flags.include),
    exclude: list(flags.exclude),
    concurrency: integer('--concurrency', flags.concurrency),
    retries: integer('--retries', flags.retries),
    connectTimeout: integer('--connect-timeout', flags['connect-timeout']),
    requestTimeout: integer('--request-timeout', flags['request-timeout']),
    dryRun: flags['dry-run'] === true || undefined,
    force: flags.force === true || undefined,
    prune: olderThan === undefined && command !== 'prune' ? undefined : defined({ olderThan, keep }),
    announce: defined<AnnounceOptions>({
      vwatch: text(flags['announce-vwatch']),
      name: text(flags['announce-name']),
      channel: text(flags['announce-channel']),
    }),
    s3: defined<S3Options>({
      endpoint: text(flags['s3-endpoint']),
      region: text(flags['s3-region']),
      forcePathStyle: flags['s3-path-style'] === true || undefined,
      checksums: checksums(flags['s3-checksums']),
      conditionalWrites: flags['s3-no-conditional-writes'] === true ? false : undefined,
    }),
  })
}

/** What `push-cache watch` takes beyond the common options. */
export interface WatchSettings {
  vwatch?: string
  watchName?: string
  channel?: string
  pollMs: number
  backoff: BackoffBounds
  once: boolean
  /** Where the sidecar endpoints listen (`--listen`); off when unset. */
  listen?: string
}

export function toWatchSettings(flags: Flags): WatchSettings {
  const vwatch = text(flags.vwatch)
  if (vwatch !== undefined && !/^https?:\/\/[^/]/i.test(vwatch))
    throw invalidOption('--vwatch', `is ${JSON.stringify(vwatch)}`, "Give the URL of vwatch's read port, e.g. http://vwatch:8080.")
  const backoff = {
    minMs: milliseconds('--backoff-min', flags['backoff-min'], DEFAULT_BACKOFF.minMs),
    maxMs: milliseconds('--backoff-max', flags['backoff-max'], DEFAULT_BACKOFF.maxMs),
  }
  if (backoff.maxMs < backoff.minMs) throw invalidOption('--backoff-max', `is below --backoff-min`, 'Make --backoff-max at least --backoff-min.')
  return {
    vwatch,
    watchName: text(flags['watch-name']),
    channel: text(flags.channel),
    pollMs: milliseconds('--poll', flags.poll, 300_000),
    backoff,
    once: flags.once === true,
    listen: text(flags.listen),
  }
}
