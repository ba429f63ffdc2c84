import { Cluster, Redis, type RedisOptions } from 'iovalkey'
import { invalidOption } from '../core/model/errors'
import type { ValkeyOptions } from './valkey-options'

const READONLY_REPLY = /^READONLY\b/

interface Endpoint {
  host: string
  port: number
}

export interface ValkeyTarget {
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
    // A cluster groups auto-pipelined commands by their first argument's slot, which for EVAL is
    // the script's text: an EVAL would share a pipeline with keys of another node, which fails it.
    autoPipeliningIgnoredCommands: ['eval', 'evalsha'],
  }
  return target.cluster
    ? new Cluster(target.nodes, {
        lazyConnect: true,
        enableAutoPipelining,
        autoPipeliningIgnoredCommands: common.autoPipeliningIgnoredCommands,
        clusterRetryStrategy: retryStrategy,
        redisOptions: common,
      })
    : new Redis({ ...common, ...target.nodes[0]!, db: target.db, lazyConnect: true, enableAutoPipelining, retryStrategy })
}
