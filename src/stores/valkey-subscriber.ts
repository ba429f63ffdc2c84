import { describeError } from '../core/model/errors'
import type { Notifier } from '../core/model/notifier'
import { type BackoffBounds, createBackoff, pause } from '../core/util/backoff'
import { createClient, parseValkeyUrl } from './valkey-client'
import type { ValkeyOptions } from './valkey-options'

export interface ValkeyChannelOptions {
  /** The store's URL: the channel lives on the same server. */
  url: string
  options: ValkeyOptions
  channel: string
  /** Messages that name another app (`{"app": "..."}`) are not hints for this one. */
  app: string
  backoff: BackoffBounds
  /** Milliseconds to connect (and to subscribe). */
  connectTimeout: number
}

/** Anything but a JSON object naming another app is a hint: a hint too many costs one read of the store. */
function concerns(message: string, app: string): boolean {
  try {
    const announced = (JSON.parse(message) as { app?: unknown } | null)?.app
    return typeof announced !== 'string' || announced === app
  } catch {
    return true
  }
}

/** Resolves when `emitter` emits `event` or `signal` aborts, leaving no listener behind on `signal`. */
function untilEndOrAbort(client: { once(event: 'end', listener: () => void): unknown }, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener('abort', done)
      resolve()
    }
    client.once('end', done)
    signal.addEventListener('abort', done, { once: true })
  })
}

/**
 * `SUBSCRIBE <channel>` on its own connection (a subscribed connection can run nothing else).
 * The client itself never reconnects: this loop does, with backoff, so that the watch hears of
 * every loss and every return. After a reconnect it hints once, since an announcement made while
 * it was away went unheard.
 */
export function valkeyChannel({ url, options, channel, app, backoff: bounds, connectTimeout }: ValkeyChannelOptions): Notifier {
  const target = parseValkeyUrl(url, options)
  return {
    name: `valkey channel ${channel} on ${target.display}`,
    async listen({ hint, status }, signal) {
      const backoff = createBackoff(bounds)
      let heardBefore = false
      // Bounded by `signal`: every pass holds a connection until it ends, or waits out the backoff.
      while (!signal.aborted) {
        const client = createClient(target, { retryStrategy: () => null, connectTimeout, commandTimeout: connectTimeout })
        let lastError: unknown
        client.on('error', (error: unknown) => {
          lastError = error
        })
        client.on('message', (from: string, message: string) => {
          if (from === channel && concerns(message, app)) hint()
        })
        const ended = untilEndOrAbort(client, signal)
        try {
          await client.connect()
          // https://valkey.io/commands/subscribe/
          await client.subscribe(channel)
          status('connected')
          backoff.reset()
          if (heardBefore) hint()
          heardBefore = true
          await ended
          if (signal.aborted) break
          status('lost', describeError(lastError ?? new Error('the connection closed')))
        } catch (error) {
          if (signal.aborted) break
          status('lost', describeError(lastError ?? error))
        } finally {
          client.disconnect()
        }
        await pause(backoff.next(), signal)
      }
    },
  }
}
