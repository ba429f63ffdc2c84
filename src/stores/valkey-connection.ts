import { setTimeout as sleep } from 'node:timers/promises'
import type { Cluster, Redis } from 'iovalkey'
import { describeError, PushCacheError, timedOut } from '../core/model/errors'
import type { StoreTimeouts } from '../core/model/options'
import { isTransient } from '../core/util/concurrency'
import { createClient, type ValkeyTarget } from './valkey-client'

/** A dead server fails the build after about a second of reconnecting, instead of hanging it
 * (`maxRetriesPerRequest` also bounds how long a command waits for a reconnect). */
const RECONNECT_ATTEMPTS = 3
/**
 * Replies with which a server says "not now" rather than "no": it is loading its data set, is a
 * replica (a failover in progress: reconnecting may reach the new primary), or a cluster is moving
 * slots or electing a primary. Core retries them with backoff.
 */
const TRANSIENT_REPLY = /^(LOADING|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/

/** One lazily opened client for a store, and the rules by which its failures read. */
export interface ValkeyConnection {
  /** The client, connected (again, after one that gave up) on first use. */
  client(): Promise<Redis | Cluster>
  /**
   * A reply error is the server answering (transient when it says "not now"); a command without a
   * reply in time timed out; any other failure means the connection is gone. Each is said once,
   * clearly, and all but a final answer are retried by core (on a new connection once this one gave up).
   */
  guard<T>(reply: Promise<T>): Promise<T>
  close(): Promise<void>
}

export function connectValkey(target: ValkeyTarget, { connectTimeout, requestTimeout }: StoreTimeouts): ValkeyConnection {
  let lastError: unknown
  let connecting: Promise<Redis | Cluster> | undefined
  /** The client `connecting` resolves to: only its end lets the next call connect afresh. */
  let current: Redis | Cluster | undefined
  /** Rejects once the client gave up for good. */
  let ended: Promise<never> = new Promise(() => {})

  async function open(): Promise<Redis | Cluster> {
    // Only a client that was ready reconnects by itself. A first connect that fails ends the client
    // at once, failing what it sent (their command timers would hold the process), and core's retry
    // opens a new one.
    let ready = false
    const retryStrategy = (times: number) => (ready && times <= RECONNECT_ATTEMPTS ? times * 200 : null)
    // Every command, pipelined or not, settles within `requestTimeout`: a server that stops
    // answering fails the command instead of holding it (and the build) for ever.
    const client = createClient(target, { enableAutoPipelining: true, retryStrategy, connectTimeout, commandTimeout: requestTimeout })
    // Without a listener iovalkey prints every connection error; keep the last one for our message.
    // A server's refusal of AUTH or SELECT arrives here too, and iovalkey would reconnect and resend
    // the commands in flight forever: give up at once, so they fail instead.
    // A cluster wraps why its nodes failed (a refused AUTH, say) in ClusterAllFailedError's `lastNodeError`.
    client.on('error', (error: Error & { lastNodeError?: Error | null }) => {
      lastError = error.lastNodeError ?? error
      if ((lastError as Error).name === 'ReplyError') client.disconnect()
    })
    // Commands in flight when the connection dropped may never settle once iovalkey gives up
    // reconnecting: `guard` fails them with this instead of hanging the build.
    ended = new Promise((_, reject) => client.once('end', () => reject(new Error('the client gave up reconnecting'))))
    ended.catch(() => {})
    // A client that gave up is done for: the next command connects afresh (core retries it).
    current = client
    client.once('end', () => {
      if (current === client) connecting = undefined
    })
    await untilReady(client, target, connectTimeout, () => lastError)
    ready = true
    return client
  }
  // A failed connect is forgotten, so that a retry connects again.
  const client = () =>
    (connecting ??= open().catch((error: unknown) => {
      connecting = undefined
      throw error
    }))

  const guard = <T>(reply: Promise<T>): Promise<T> =>
    Promise.race([reply, ended]).catch((error: Error) => {
      if (error.name === 'ReplyError') {
        if (!TRANSIENT_REPLY.test(error.message)) throw error
        throw new PushCacheError('STORE_UNREACHABLE', `${target.display} answered ${error.message}`, { cause: error, transient: true })
      }
      if (error.message === 'Command timed out') throw timedOut(target.display, 'a command got no reply', 'request', requestTimeout, error)
      throw new PushCacheError('STORE_UNREACHABLE', `Lost the connection to ${target.display}: ${describeError(lastError ?? error)}`, {
        cause: error,
        // Dropped or refused (a restart): worth a new connection. Not when the server refused our login.
        transient: lastError === undefined || isTransient(lastError),
      })
    })

  return {
    client,
    guard,
    async close() {
      const valkey = await connecting?.catch(() => undefined)
      if (!valkey) return
      // QUIT waits for the replies in flight; a dead server must not hold the process (nor the timer).
      await Promise.race([valkey.quit().catch(() => undefined), sleep(1000, undefined, { ref: false })])
      valkey.disconnect()
    },
  }
}

/** Connects `client`, within `connectTimeout` until the server is ready; a failure says why and what to check. */
async function untilReady(client: Redis | Cluster, target: ValkeyTarget, connectTimeout: number, lastError: () => unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  let handshakeTimer: NodeJS.Timeout | undefined
  try {
    // `connect` waits for the server to be ready, which a server loading its data set (or one that
    // accepted the connection and never answers) may never be.
    const notReady = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timedOut(target.display, 'the server was not ready for commands', 'connect', connectTimeout)), connectTimeout)
      // Half the connect deadline is ages for a TLS server's first answer (one round trip).
      if (target.tls)
        handshakeTimer = setTimeout(() => {
          const plain = plainTextServer(client, target, connectTimeout / 2)
          if (plain) reject(plain)
        }, connectTimeout / 2)
    })
    await Promise.race([client.connect(), notReady])
  } catch (error) {
    client.disconnect()
    if (error instanceof PushCacheError) throw error
    const reason = lastError() ?? error
    if ((reason as { code?: unknown })?.code === 'ETIMEDOUT') throw timedOut(target.display, 'no connection was established', 'connect', connectTimeout, error)
    throw new PushCacheError('STORE_UNREACHABLE', `Cannot connect to ${target.display}: ${describeError(reason)}. ${connectFix(target, reason)}`, {
      cause: error,
      // Refused or reset: the server may be restarting. A refused login or certificate is final.
      transient: isTransient(reason),
    })
  } finally {
    clearTimeout(timer)
    clearTimeout(handshakeTimer)
  }
}

/**
 * A `valkeys://` or `rediss://` client whose TCP connection opened but whose TLS handshake got no
 * answer: a plaintext server reads the handshake as the start of a command and waits for its end.
 * Said as such, and final: another attempt would wait as long for the same silence.
 */
function plainTextServer(client: Redis | Cluster, target: ValkeyTarget, waitedMs: number): PushCacheError | undefined {
  const stream = (client as { stream?: { connecting?: boolean; secureConnecting?: boolean; bytesRead?: number } }).stream
  if (!stream || stream.connecting || stream.secureConnecting !== true || stream.bytesRead !== 0) return undefined
  const plain = target.display.replace(/^(valkey|redis)s/, '$1')
  return new PushCacheError(
    'STORE_UNREACHABLE',
    `${target.display} expected TLS, and the server did not speak it: the connection opened, and the TLS handshake got no answer within ${waitedMs} ms. If the server speaks plain text, use ${plain.split('://')[0]}:// (${plain}).`,
  )
}

/** What to check after a failed connect, by why it failed. */
function connectFix(target: ValkeyTarget, error: unknown): string {
  const reason = `${(error as { code?: unknown })?.code} ${(error as Error)?.message}`
  if (target.tls && /SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF/.test(reason))
    return 'Node does not trust the server certificate: set NODE_EXTRA_CA_CERTS to the PEM file of its CA.'
  if (!target.tls && /ECONNRESET|Connection is closed/.test(reason)) return 'If the server accepts TLS only, use valkeys:// or rediss://.'
  return 'Check the host, the port and the credentials.'
}
