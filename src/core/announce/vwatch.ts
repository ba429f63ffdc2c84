import { describeError } from '../model/errors'
import type { Notifier } from '../model/notifier'
import { type BackoffBounds, createBackoff, deadline, pause } from '../util/backoff'

export interface VwatchPollOptions {
  /** The read port, e.g. `http://vwatch:8080`. */
  url: string
  /** The watched name, e.g. `push-cache/my-app`; may contain `/`. */
  name: string
  /** How long the server may hold one poll. @default 30 */
  timeoutSeconds?: number
  backoff: BackoffBounds
}

export interface VwatchTarget {
  /** Without credentials: safe to print. */
  url: string
  headers: Record<string, string>
}

/** Where the requests about `name` go (`PUT` on the write port, `GET` on the read port). `fetch` refuses URLs with credentials, so those move into an `Authorization` header. */
export function vwatchTarget(base: string, name: string): VwatchTarget {
  const url = new URL(base)
  const headers: Record<string, string> = {}
  if (url.username || url.password) headers.Authorization = `Basic ${btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`)}`
  url.username = url.password = ''
  // Each segment is encoded, each `/` kept: vwatch takes everything after /v1/versions/ as the name.
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/versions/${name.split('/').map(encodeURIComponent).join('/')}`
  return { url: url.href, headers }
}

/** Beyond the poll's own timeout, how long the server may take to answer before the request is dropped. */
const GRACE_MS = 10_000
/** After an answer without a change, the next poll waits up to this long, so that many watchers do not return in step. */
const QUIET_JITTER_MS = 1_000

const unquote = (etag: string | null) => etag?.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined

/**
 * vwatch's long-poll (jolynch/vwatch, read port): `GET /v1/versions/<name>?version=<last>&timeout=30s`
 * holds until the stored version differs from ours or the timeout passes, and answers 200 either
 * way, so the `ETag` tells whether anything changed. 404 means nothing was announced under that
 * name yet: back off, do not spin. A changed version is a hint; the next poll goes out at once,
 * with the new version. An answer without a change never makes it poll again at once: a server
 * that answers without holding would otherwise be flooded.
 */
export function vwatchPoll({ url, name, timeoutSeconds = 30, backoff: bounds }: VwatchPollOptions): Notifier {
  const target = vwatchTarget(url, name)
  return {
    name: `vwatch ${new URL(target.url).origin} (${name})`,
    async listen({ hint, status, heldVersion }, signal) {
      const backoff = createBackoff(bounds)
      let last = heldVersion()
      // Bounded by `signal`: every pass waits on the server, the backoff or the jitter.
      while (!signal.aborted) {
        const started = Date.now()
        const request = deadline(signal, timeoutSeconds * 1000 + GRACE_MS, () => new Error(`no answer within ${timeoutSeconds} s + ${GRACE_MS / 1000} s`))
        let wait: number
        try {
          const query = `${last === undefined ? '' : `version=${encodeURIComponent(last)}&`}timeout=${timeoutSeconds}s`
          const response = await fetch(`${target.url}?${query}`, { headers: target.headers, signal: request.signal })
          await response.arrayBuffer() // the body (at most 4 KiB) is not needed; reading it frees the connection
          if (response.status === 404) {
            status('connected')
            wait = backoff.next()
          } else if (!response.ok) throw new Error(`HTTP ${response.status}`)
          else {
            status('connected')
            const version = unquote(response.headers.get('etag'))
            if (version !== undefined && version !== last) {
              last = version
              backoff.reset()
              hint()
              wait = 0
            } else {
              // Held for the whole timeout: go again soon. Answered early without a change: the server is not holding; back off.
              const held = Date.now() - started >= (timeoutSeconds * 1000) / 2
              wait = held ? Math.random() * QUIET_JITTER_MS : backoff.next()
            }
          }
        } catch (error) {
          if (signal.aborted) break
          // fetch says only "fetch failed"; the socket's reason (ECONNREFUSED...) is its cause.
          status('lost', describeError(request.signal.aborted ? request.signal.reason : ((error as Error).cause ?? error)))
          wait = backoff.next()
        } finally {
          request.dispose()
        }
        await pause(wait, signal)
      }
    },
  }
}
