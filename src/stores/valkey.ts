import { readFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Cluster, Redis, type RedisOptions } from 'iovalkey'
import { describeError, invalidOption, PushCacheError, timedOut } from '../core/model/errors'
import { DEFAULT_TIMEOUTS, type StoreTimeouts } from '../core/model/options'
import type { PutBody, PutOptions, PutResult, Store, StoreEntry } from '../core/store/store'
import { isTransient } from '../core/util/concurrency'
import { lockTtlOf, type ValkeyOptions } from './valkey-options'

const DRIVER_NAME = 'valkey'

/**
 * Writes in flight by default: each `SET` costs no connection, and auto-pipelining sends all that
 * are ready in one round trip, so many in flight means few round trips (core still caps their bytes).
 */
const CONCURRENCY = 512
/** Keys per round of pipelined UNLINK/PERSIST/EXISTS: bounds what one round holds in memory. */
const BATCH = 1000
/** What Redis and Valkey accept by default when CONFIG GET is not allowed. */
const DEFAULT_MAX_BULK = 512 * 1024 * 1024
/** A dead server fails the build after about a second of reconnecting, instead of hanging it
 * (`maxRetriesPerRequest` also bounds how long a command waits for a reconnect). */
const RECONNECT_ATTEMPTS = 3
/**
 * Replies with which a server says "not now" rather than "no": it is loading its data set, is a
 * replica (a failover in progress: reconnecting may reach the new primary), or a cluster is moving
 * slots or electing a primary. Core retries them with backoff.
 */
const TRANSIENT_REPLY = /^(LOADING|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/
const READONLY_REPLY = /^READONLY\b/

interface Endpoint {
  host: string
  port: number
}

interface ValkeyTarget {
  cluster: boolean
  tls: boolean
  nodes: Endpoint[]
  db: number
  username?: string
  password?: string
  /** The URL without credentials. */
  display: string
}

const URL_FORM = /^(valkeys?|rediss?)(\+cluster)?:\/\/(?:(.*)@)?([^@/]+?)(?:\/(\d*))?$/i
const USAGE = 'Use valkey://[user:password@]host:6379[/db] (also redis://, TLS with valkeys:// or rediss://), or valkey+cluster://host:port[,host:port...].'

/** Parses the store URL and merges credentials: `options` first, then the URL, then the environment. */
export function parseValkeyUrl(url: string, options: ValkeyOptions = {}, env: NodeJS.ProcessEnv = process.env): ValkeyTarget {
  const match = URL_FORM.exec(url)
  if (!match) throw invalidOption('store', `is not a Valkey URL (${url.replace(/\/\/.*@/, '//***@')})`, USAGE)
  const [, scheme, clusterSuffix, userinfo, hosts, path] = match
  const cluster = Boolean(clusterSuffix || options.cluster)
  const nodes = (options.cluster ?? hosts!.split(',')).map(parseEndpoint)
  const db = Number(path || 0)
  if (cluster && db !== 0) throw invalidOption('store', `names database ${db} in cluster mode`, 'Redis Cluster has only database 0; drop the `/db`.')
  const separator = userinfo?.indexOf(':') ?? -1
  const [urlUser, urlPassword] = userinfo === undefined ? [] : separator < 0 ? [userinfo] : [userinfo.slice(0, separator), userinfo.slice(separator + 1)]
  return {
    cluster,
    tls: /^(valkeys|rediss)$/i.test(scheme!),
    nodes,
    db,
    username: options.username ?? (urlUser ? decodeURIComponent(urlUser) : env.PUSH_CACHE_VALKEY_USERNAME),
    password: options.password ?? (urlPassword ? decodeURIComponent(urlPassword) : env.PUSH_CACHE_VALKEY_PASSWORD),
    display: `${scheme!.toLowerCase()}${cluster ? '+cluster' : ''}://${nodes.map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)).join(',')}${db ? `/${db}` : ''}`,
  }
}

function parseEndpoint(text: string): Endpoint {
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text.trim())
  if (!match) throw invalidOption('store', `has the host ${JSON.stringify(text)}`, USAGE)
  return { host: match[1] ?? match[2]!, port: Number(match[3] ?? 6379) }
}

/**
 * A lazily connecting client for `target` (standalone or cluster). `retryStrategy` decides how long
 * it reconnects; every command, pipelined or not, settles within `commandTimeout`.
 */
export function createClient(
  target: ValkeyTarget,
  {
    enableAutoPipelining,
    retryStrategy,
    connectTimeout,
    commandTimeout,
  }: Pick<RedisOptions, 'enableAutoPipelining' | 'retryStrategy' | 'connectTimeout' | 'commandTimeout'>,
): Redis | Cluster {
  const common: RedisOptions = {
    username: target.username,
    password: target.password,
    // Node's default trust store checks the certificate against the host (an IP must be in its
    // subjectAltName). A private CA is trusted through NODE_EXTRA_CA_CERTS=/path/ca.pem, which
    // Node reads only at start: set it in the environment of the build or of `push-cache`.
    tls: target.tls ? {} : undefined,
    connectTimeout,
    commandTimeout,
    maxRetriesPerRequest: 2,
    reconnectOnError: (error) => READONLY_REPLY.test(error.message),
    // iovalkey waits this long for a closed socket to say goodbye before it destroys it, and the
    // process cannot exit meanwhile: a refused login would cost every CLI run 2 s.
    disconnectTimeout: 100,
  }
  return target.cluster
    ? new Cluster(target.nodes, { lazyConnect: true, enableAutoPipelining, clusterRetryStrategy: retryStrategy, redisOptions: common })
    : new Redis({ ...common, ...target.nodes[0]!, db: target.db, lazyConnect: true, enableAutoPipelining, retryStrategy })
}

/** `SCAN MATCH` takes a glob: a prefix is matched literally only with its metacharacters escaped. */
const escapeGlob = (text: string): string => text.replace(/[*?[\]\\]/g, '\\$&')

/**
 * Valkey or Redis, standalone or Cluster, with valpop's keys (`data:<app>:<ts>:<relpath>` = the raw
 * bytes, `lock:<app>:<ts>`). A value holds bytes only: Content-Type and Cache-Control ride in the
 * build's manifest (`manifest:<app>:<ts>`, field `entries`, written by core), so valpop's readers
 * still see plain data keys.
 *
 * Core runs up to `concurrency` puts at once; with auto-pipelining those commands leave in one
 * pipeline per tick (per node in a cluster) instead of one round trip each.
 */
export function createValkeyStore(url: string, options: ValkeyOptions, { connectTimeout, requestTimeout }: StoreTimeouts = DEFAULT_TIMEOUTS): Store {
  const target = parseValkeyUrl(url, options)
  let lastError: unknown
  let connecting: Promise<Redis | Cluster> | undefined
  /** The client `connecting` resolves to: only its end lets the next call connect afresh. */
  let current: Redis | Cluster | undefined
  let maxBulk: Promise<number> | undefined
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
    let timer: NodeJS.Timeout | undefined
    try {
      // `connect` waits for the server to be ready, which a server loading its data set (or one that
      // accepted the connection and never answers) may never be.
      const notReady = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timedOut(target.display, 'the server was not ready for commands', 'connect', connectTimeout)), connectTimeout)
      })
      await Promise.race([client.connect(), notReady])
      ready = true
    } catch (error) {
      client.disconnect()
      if (error instanceof PushCacheError) throw error
      const reason = lastError ?? error
      if ((reason as { code?: unknown })?.code === 'ETIMEDOUT')
        throw timedOut(target.display, 'no connection was established', 'connect', connectTimeout, error)
      throw new PushCacheError('STORE_UNREACHABLE', `Cannot connect to ${target.display}: ${describeError(reason)}. ${connectFix(reason)}`, {
        cause: error,
        // Refused or reset: the server may be restarting. A refused login or certificate is final.
        transient: isTransient(reason),
      })
    } finally {
      clearTimeout(timer)
    }
    return client
  }
  // A failed connect is forgotten, so that a retry connects again.
  const client = () =>
    (connecting ??= open().catch((error: unknown) => {
      connecting = undefined
      throw error
    }))

  /** What to check after a failed connect, by why it failed. */
  function connectFix(error: unknown): string {
    const reason = `${(error as { code?: unknown })?.code} ${(error as Error)?.message}`
    if (target.tls && /SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF/.test(reason))
      return 'Node does not trust the server certificate: set NODE_EXTRA_CA_CERTS to the PEM file of its CA.'
    if (!target.tls && /ECONNRESET|Connection is closed/.test(reason)) return 'If the server accepts TLS only, use valkeys:// or rediss://.'
    return 'Check the host, the port and the credentials.'
  }

  /** The server's largest accepted value, asked once. */
  async function maxValueSize(): Promise<number> {
    maxBulk ??= client()
      .then((valkey) => valkey.config('GET', 'proto-max-bulk-len'))
      .then(
        (reply) => Number((reply as string[])[1]) || DEFAULT_MAX_BULK,
        () => DEFAULT_MAX_BULK,
      )
    return maxBulk
  }

  /**
   * A reply error is the server answering (transient when it says "not now"); a command without a
   * reply in time timed out; any other failure means the connection is gone. Each is said once,
   * clearly, and all but a final answer are retried by core (on a new connection once this one gave up).
   */
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

  /** Runs `command` over `keys`, `BATCH` at a time; each batch goes out pipelined (per node in a cluster). */
  async function eachKey<T>(keys: readonly string[], command: (valkey: Redis | Cluster, key: string) => Promise<T>): Promise<T[]> {
    const valkey = await client()
    const results: T[] = []
    for (let start = 0; start < keys.length; start += BATCH)
      results.push(...(await guard(Promise.all(keys.slice(start, start + BATCH).map((key) => command(valkey, key))))))
    return results
  }

  return {
    kind: DRIVER_NAME,
    layout: 'versioned',
    display: target.display,
    // Replies that say "not now" are already marked `transient` by `guard`.
    isTransient,
    pendingExpiry: { seconds: lockTtlOf(options), option: 'valkey.lockTtl' },

    concurrency: CONCURRENCY,

    // https://valkey.io/commands/set/ ; a value is sent whole, so the file is read into memory.
    async put(key: string, body: PutBody, putOptions: PutOptions = {}): Promise<PutResult> {
      const size = 'file' in body ? body.size : body.byteLength
      const limit = await maxValueSize()
      if (size > limit)
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `${key} is ${size} bytes, above the ${limit} bytes the server accepts in one value (proto-max-bulk-len). Raise proto-max-bulk-len on the server or leave the file out with \`exclude\`.`,
        )
      const value = 'file' in body ? await readFile(body.file) : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
      const valkey = await client()
      await guard(putOptions.expiresIn ? valkey.set(key, value, 'EX', putOptions.expiresIn) : valkey.set(key, value))
      return {}
    },

    // https://valkey.io/commands/exists/
    async exists(keys: readonly string[]) {
      return (await eachKey(keys, (valkey, key) => valkey.exists(key))).map((count) => count === 1)
    },

    // https://valkey.io/commands/get/
    async read(key: string) {
      const value = await guard((await client()).getBuffer(key))
      return value === null ? undefined : Readable.from([value])
    },

    // https://valkey.io/commands/scan/ ; every master holds a share of the keys in a cluster. The
    // sizes of a page cost one pipelined round of STRLEN.
    async *list(prefix: string): AsyncIterable<StoreEntry> {
      const valkey = await client()
      for (const node of valkey instanceof Cluster ? valkey.nodes('master') : [valkey]) {
        const seen = new Set<string>() // SCAN may return a key twice
        let cursor = '0'
        do {
          const [next, page] = await guard(node.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000))
          cursor = next
          const keys = page.filter((key) => !seen.has(key))
          const sizes = await guard(Promise.all(keys.map((key) => node.strlen(key))))
          for (const [index, key] of keys.entries()) {
            seen.add(key)
            yield { key, size: sizes[index] }
          }
        } while (cursor !== '0')
      }
    },

    // https://valkey.io/commands/unlink/ ; one key per command, so a cluster never sees a cross-slot request.
    async delete(keys: readonly string[]) {
      await eachKey(keys, (valkey, key) => valkey.unlink(key))
    },

    // https://valkey.io/commands/persist/ ; 0 means "no expiry" or "no key": EXISTS tells which.
    async persist(keys: readonly string[]) {
      const lost = await eachKey(keys, async (valkey, key) => ((await valkey.persist(key)) === 1 || (await valkey.exists(key)) === 1 ? undefined : key))
      return lost.filter((key) => key !== undefined)
    },

    // https://valkey.io/commands/publish/ ; in a cluster every node forwards it to its own subscribers.
    async publish(channel: string, message: string) {
      return guard((await client()).publish(channel, message))
    },

    async close() {
      const valkey = await connecting?.catch(() => undefined)
      if (!valkey) return
      // QUIT waits for the replies in flight; a dead server must not hold the process (nor the timer).
      await Promise.race([valkey.quit().catch(() => undefined), sleep(1000, undefined, { ref: false })])
      valkey.disconnect()
    },
  }
}
