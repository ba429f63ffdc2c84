import { setTimeout as sleep } from 'node:timers/promises'
import { describeError } from '../model/errors'
import type { ResolvedCoreOptions } from '../model/options'
import type { Store } from '../store/store'
import { isTransient, withRetry } from '../util/concurrency'
import type { Logger } from '../util/logger'
import { type VwatchTarget, vwatchTarget } from './vwatch'

/** What an announcement says: enough for a watcher to find the build, nothing secret. */
export interface BuildAnnouncement {
  app: string
  timestamp: number
  manifestKey: string
  image?: string
  /** The store's display string, every secret redacted. */
  store: string
}

/** `ok`; `conflict` when vwatch already holds a newer build (someone newer won); or why it failed. */
type AnnounceOutcome = 'ok' | 'conflict' | `failed: ${string}`

export interface AnnounceReport {
  vwatch?: AnnounceOutcome
  channel?: AnnounceOutcome
}

/** An announce never holds a build for long: each attempt gets this long, and a failed one is retried this often. */
const ATTEMPT_TIMEOUT_MS = 2000
const RETRIES = 2
const RETRY_BASE_DELAY_MS = 250

/** A failed attempt: `transient` ones (no answer, 5xx, 429) are tried again. */
class AnnounceFailure extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message)
  }
}

/**
 * Announces a build that is complete in the store, on every channel `options.announce` names, at
 * once. Never throws: a failure is logged as a warning and reported, since the build is in the
 * store either way and watchers that poll will find it.
 */
export async function announce(input: { store: Store; options: ResolvedCoreOptions; manifestKey: string; logger: Logger }): Promise<AnnounceReport> {
  const { store, options, manifestKey, logger } = input
  const { vwatch, name, channel } = options.announce
  const announcement: BuildAnnouncement = {
    app: options.app,
    timestamp: options.timestamp,
    manifestKey,
    ...(options.image ? { image: options.image } : {}),
    store: store.display,
  }
  const build = `build ${options.timestamp} of ${options.app}`
  const attempt = async (where: string, send: () => Promise<AnnounceOutcome>, worthRetrying: (error: unknown) => boolean): Promise<AnnounceOutcome> => {
    try {
      return await withRetry(send, {
        retries: RETRIES,
        isTransient: worthRetrying,
        baseDelayMs: RETRY_BASE_DELAY_MS,
        onRetry: (error, count) => logger.debug(`retrying the announce to ${where} (${count}/${RETRIES}): ${describeError(error)}`),
      })
    } catch (error) {
      const reason = describeError(error)
      logger.warn(`could not announce ${build} to ${where}: ${reason}. The build is in the store; watchers that poll will find it.`)
      return `failed: ${reason}`
    }
  }
  const target = vwatch === undefined ? undefined : vwatchTarget(vwatch, name)
  const [vwatchOutcome, channelOutcome] = await Promise.all([
    target && attempt(`vwatch ${target.url}`, () => putVersion(target, announcement, build, logger), isTransient),
    channel === undefined ? undefined : attempt(`channel ${channel}`, () => publish(store, channel, announcement, build, logger), store.isTransient),
  ])
  return { ...(vwatchOutcome && { vwatch: vwatchOutcome }), ...(channelOutcome && { channel: channelOutcome }) }
}

// https://github.com/jolynch/vwatch#running: the version comes from `ETag`, its time from
// `Last-Modified`; 204 when stored, 409 when a newer or different version is already stored.
async function putVersion({ url, headers }: VwatchTarget, announcement: BuildAnnouncement, build: string, logger: Logger): Promise<AnnounceOutcome> {
  let response: Response
  try {
    response = await fetch(url, {
      method: 'PUT',
      headers: {
        ...headers,
        ETag: `"${announcement.timestamp}"`,
        'Last-Modified': new Date(announcement.timestamp * 1000).toUTCString(),
        'Content-Type': 'application/json',
      },
      body: JSON.stringify(announcement),
      signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
    })
  } catch (error) {
    const kind = (error as Error).name
    // fetch says only "fetch failed"; the socket's reason (ECONNREFUSED...) is its cause.
    throw new AnnounceFailure(
      kind === 'TimeoutError' || kind === 'AbortError' ? `no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s` : describeError((error as Error).cause ?? error),
      true,
    )
  }
  const echoed = (await response.text().catch(() => '')).trim().slice(0, 200)
  // A server (or a proxy before it) may echo the request: its credentials must not reach the log.
  const credentials = headers.Authorization?.split(' ')[1]
  const body = credentials ? echoed.replaceAll(credentials, '***') : echoed
  if (response.status === 204) {
    logger.info(`announced ${build} to vwatch ${url}`)
    return 'ok'
  }
  if (response.status === 409) {
    logger.info(`vwatch ${url} already holds version ${response.headers.get('etag') ?? '?'}, newer than ${build}: someone newer won, nothing to announce`)
    return 'conflict'
  }
  throw new AnnounceFailure(`HTTP ${response.status}${body ? ` ${body}` : ''}`, response.status >= 500 || response.status === 429)
}

async function publish(store: Store, channel: string, announcement: BuildAnnouncement, build: string, logger: Logger): Promise<AnnounceOutcome> {
  if (!store.publish) throw new AnnounceFailure(`the ${store.kind} store ${store.display} has no channels (Valkey and Redis have)`, false)
  const timeout = sleep(ATTEMPT_TIMEOUT_MS, undefined, { ref: false }).then(() => {
    throw new AnnounceFailure(`no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s`, true)
  })
  const receivers = await Promise.race([store.publish(channel, JSON.stringify(announcement)), timeout])
  logger.info(`announced ${build} on channel ${channel} of ${store.display} (${receivers} subscribers)`)
  return 'ok'
}
