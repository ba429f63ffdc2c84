import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'

/**
 * A server that speaks vwatch's wire protocol (jolynch/vwatch; see
 * /work/shared/reference/vwatch-pubcache.md), in memory, on two loopback ports as vwatch has:
 * writes (`PUT /v1/versions/{name}`) on one, long-polls (`GET /v1/versions/{name}`) on the other.
 * Replication, fill and the server-side body hash are left out: push-cache always sends its own version.
 */
export interface VwatchEnv {
  /** The write port's base URL: `PUT /v1/versions/{name}`, and `GET /debug/stats?name=` for tests. */
  write: string
  /** The read port's base URL: `GET /v1/versions/{name}?version=&timeout=`. */
  read: string
}

/** What the server saw for one name, from `GET /debug/stats?name=<name>` on the write port. */
export interface VwatchStats {
  /** PUTs received, whatever their answer. */
  puts: number
  /** GETs received on the read port, whatever their answer (404s included). */
  gets: number
  /** GETs blocked in a long-poll right now. */
  waiting: number
  /** The stored version, unset before the first accepted PUT. */
  version?: string
}

declare module 'vitest' {
  export interface ProvidedContext {
    vwatch: VwatchEnv
  }
}

const HOST = '127.0.0.1'
const PREFIX = '/v1/versions/'
/** vwatch's defaults: `VWATCH_DATA_LIMIT_BYTES`, `VWATCH_BLOCK_FOR`, `VWATCH_JITTER_PER_WATCH`. */
const DATA_LIMIT_BYTES = 4 * 1024
const DEFAULT_TIMEOUT_MS = 10_000
const MAX_TIMEOUT_MS = 60_000
const JITTER_PER_WATCHER_MS = 1

interface StoredVersion {
  version: string
  /** Microseconds since the epoch, as vwatch keeps it. */
  modified: number
  data: Buffer
}

/** A long-poll waiting on one version of a name: `wake(n)` answers it after up to `n` ms of jitter. */
interface Waiter {
  version: string
  wake(watchers: number): void
}

export interface VwatchServer extends VwatchEnv {
  close(): Promise<void>
}

/** Starts one server; `ports` pins them (a test that stops and restarts "the same" vwatch). */
export async function startVwatchServer(ports: { write?: number; read?: number } = {}): Promise<VwatchServer> {
  const versions = new Map<string, StoredVersion>()
  const waiters = new Map<string, Set<Waiter>>()
  const stats = new Map<string, VwatchStats>()
  const statsOf = (name: string) => stats.get(name) ?? stats.set(name, { puts: 0, gets: 0, waiting: 0 }).get(name)!

  const write = await listen(
    http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://vwatch')
      if (req.method === 'GET' && url.pathname === '/debug/stats') {
        const name = url.searchParams.get('name') ?? ''
        return json(res, 200, { ...statsOf(name), version: versions.get(name)?.version })
      }
      const name = nameOf(url)
      if (req.method !== 'PUT' || !name) return text(res, 404, `no route ${req.method} ${url.pathname}\n`)
      statsOf(name).puts++
      const modified = modifiedOf(req, url)
      if (typeof modified === 'string') return text(res, 400, modified)
      readLimited(req, DATA_LIMIT_BYTES).then(
        (data) => {
          if (!data) return text(res, 413, `Body larger than DataLimitBytes=${DATA_LIMIT_BYTES}\n`)
          const version = unquote(req.headers.etag ?? '') || url.searchParams.get('version') || ''
          // vwatch hashes the body when no version is given; push-cache never relies on that.
          if (!version) return text(res, 400, 'This test server needs a version: an ETag header or ?version=\n')
          const stored = store(name, { version, modified, data })
          res.writeHead(stored.version === version ? 204 : 409, versionHeaders(stored)).end()
        },
        () => res.destroy(),
      )
    }),
    ports.write,
  )

  /** vwatch's rule: a PUT wins only when strictly newer and a different version; the same version again is a 204 that changes nothing. */
  function store(name: string, candidate: StoredVersion): StoredVersion {
    const previous = versions.get(name)
    if (previous && !(previous.modified < candidate.modified && previous.version !== candidate.version)) return previous
    versions.set(name, candidate)
    const waiting = [...(waiters.get(name) ?? [])].filter((waiter) => waiter.version !== candidate.version)
    for (const waiter of waiting) waiter.wake(waiting.length)
    return candidate
  }

  const read = await listen(
    http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://vwatch')
      const name = nameOf(url)
      if (req.method !== 'GET' || !name) return text(res, 404, `no route ${req.method} ${url.pathname}\n`)
      const stat = statsOf(name)
      stat.gets++
      const timeout = timeoutOf(url)
      if (typeof timeout === 'string') return text(res, 400, timeout)
      const current = versions.get(name)
      if (!current) return res.writeHead(404).end()
      const previous = unquote(req.headers.etag ?? '') || unquote(url.searchParams.get('version') ?? '')
      const started = performance.now()
      const answer = (timing: string) => {
        const stored = versions.get(name)!
        res
          .writeHead(200, {
            ...versionHeaders(stored),
            'Content-Type': 'application/octet-stream',
            'Server-Timing': `${timing}watch;dur=${Math.round(performance.now() - started)}ms`,
          })
          .end(stored.data)
      }
      if (!previous || previous !== current.version) return answer('')

      // Same version as stored: block until a newer one is stored or the timeout passes, then 200 either way.
      const set = waiters.get(name) ?? waiters.set(name, new Set()).get(name)!
      let timer: NodeJS.Timeout | undefined
      const settle = () => {
        clearTimeout(timer)
        set.delete(waiter)
        stat.waiting--
      }
      const waiter: Waiter = {
        version: previous,
        wake(watchers) {
          settle()
          // vwatch spreads the herd it wakes: each answer waits a random part of 1 ms per watcher.
          const jitter = Math.floor(Math.random() * watchers * JITTER_PER_WATCHER_MS)
          setTimeout(() => answer(`jitter;dur=${jitter}ms, `), jitter)
        },
      }
      set.add(waiter)
      stat.waiting++
      timer = setTimeout(() => {
        settle()
        answer('')
      }, timeout)
      // A client that gave up is no longer a watcher.
      res.once('close', () => {
        if (set.has(waiter)) settle()
      })
    }),
    ports.read,
  )

  return {
    write: write.url,
    read: read.url,
    async close() {
      await Promise.all([write.close(), read.close()])
    },
  }
}

/** `{name}` is everything after `/v1/versions/`, slashes included. */
function nameOf(url: URL): string {
  if (!url.pathname.startsWith(PREFIX)) return ''
  try {
    return decodeURIComponent(url.pathname.slice(PREFIX.length))
  } catch {
    return ''
  }
}

/** vwatch's `parse.ParseETagToVersion`: strips one pair of double quotes. */
const unquote = (etag: string): string => etag.replace(/^"/, '').replace(/"$/, '')

/** Microseconds from `Last-Modified` (RFC 1123), else `?modified=` (µs), else now; a message for a malformed one. */
function modifiedOf(req: http.IncomingMessage, url: URL): number | string {
  const header = req.headers['last-modified']
  if (header) {
    const ms = Date.parse(header)
    return /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(header) && !Number.isNaN(ms)
      ? ms * 1000
      : `Invalid RFC1123 GMT Last-Modified header provided: ${header}\n`
  }
  const micros = url.searchParams.get('modified')
  if (micros !== null) return /^-?\d+$/.test(micros) ? Number(micros) : `Invalid modified url parameter provided: ${micros}\n`
  return Math.floor((performance.timeOrigin + performance.now()) * 1000)
}

/** A Go duration as vwatch takes it (`30s`, `500ms`, `1m`), at most a minute; a message for anything else. */
function timeoutOf(url: URL): number | string {
  const raw = url.searchParams.get('timeout')
  if (raw === null) return DEFAULT_TIMEOUT_MS
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(raw)
  if (!match) return 'Invalid timeout duration, try something like 10s\n'
  const ms = Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[match[2] as 'ms' | 's' | 'm']
  return ms > MAX_TIMEOUT_MS ? 'User cannot request block for more than 1m0s\n' : ms
}

function versionHeaders({ version, modified }: StoredVersion): http.OutgoingHttpHeaders {
  return {
    ETag: `"${version}"`,
    'Last-Modified': new Date(Math.floor(modified / 1000)).toUTCString(),
    'X-Last-Sync': String(modified),
  }
}

/** The body, or `undefined` when it is longer than `limit` bytes. */
async function readLimited(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size <= limit) chunks.push(chunk)
  }
  return size > limit ? undefined : Buffer.concat(chunks)
}

const text = (res: http.ServerResponse, status: number, body: string) => void res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(body)
const json = (res: http.ServerResponse, status: number, body: unknown) =>
  void res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body))

async function listen(server: http.Server, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, HOST, resolve))
  return {
    url: `http://${HOST}:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** One server for the whole run; tests tell their names apart, so they share it. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startVwatchServer()
  project.provide('vwatch', { write: server.write, read: server.read })
  return () => server.close()
}
