import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, Gauge, Registry } from 'prom-client'
import { invalidOption } from '../core/model/errors'
import type { WatchEvent } from '../core/serve/watch'

/**
 * What `push-cache watch --listen` serves beside nginx, so that Kubernetes and Prometheus can tell
 * "has a build, following" from "stuck since yesterday":
 * - `/healthz`: 200 while the watch loop is alive (it reported within `staleAfterMs`);
 * - `/readyz`: 200 once `dest` holds a complete build;
 * - `/metrics`: the Prometheus text format.
 *
 * prom-client writes the format and its escaping; we only feed it the watch's own events.
 */
export interface WatchMonitor {
  /** Feed every watch event here (the CLI's `onEvent`). */
  onEvent(event: WatchEvent): void
  /** Call after every catch-up attempt: it proves the loop alive and, when `ok`, the store read. */
  attempted(ok: boolean): void
  /** The address it listens on, once `listen` resolved (`127.0.0.1:9464`). */
  readonly address: string | undefined
  listen(address: string): Promise<void>
  close(): Promise<void>
}

export interface MonitorOptions {
  app: string
  /** `/healthz` fails when no catch-up attempt ended for this long (the CLI allows a poll, a backoff and a catch-up). */
  staleAfterMs: number
  now?: () => number
}

type FailureKind = 'store' | 'update' | 'notifier'

export function createWatchMonitor({ app, staleAfterMs, now = Date.now }: MonitorOptions): WatchMonitor {
  const metrics = createMetrics(app, now)
  let aliveAt = now()
  let ready = false
  const serving = (timestamp: number | undefined) => {
    if (timestamp === undefined) return
    metrics.served.set(timestamp)
    ready = true
  }
  const server = createProbeServer({
    healthz: () => {
      const silentMs = now() - aliveAt
      return silentMs <= staleAfterMs ? [200, 'ok\n'] : [503, `watch loop silent for ${Math.round(silentMs / 1000)} s\n`]
    },
    readyz: () => (ready ? [200, 'ready\n'] : [503, 'no complete build served yet\n']),
    registry: metrics.registry,
  })
  const monitor: WatchMonitor = {
    onEvent(event) {
      switch (event.event) {
        case 'serving':
        case 'up-to-date':
          return serving(event.timestamp)
        case 'applied':
          metrics.applied.inc()
          metrics.downloaded.inc(event.downloaded.bytes)
          return serving(event.timestamp)
        case 'store-lost':
          metrics.storeUp.set(0)
          return metrics.failures.inc({ kind: 'store' })
        case 'update-failed':
          return metrics.failures.inc({ kind: 'update' })
        case 'notifier-connected':
          return metrics.notifierUp.set({ notifier: event.notifier }, 1)
        case 'notifier-lost':
          metrics.notifierUp.set({ notifier: event.notifier }, 0)
          return metrics.failures.inc({ kind: 'notifier' })
      }
    },
    attempted(ok) {
      aliveAt = now()
      if (ok) metrics.storeRead(aliveAt)
    },
    address: undefined,
    listen: (address) => listen(server, address).then((bound) => void Object.assign(monitor, { address: bound })),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        // A probe's kept-alive connection must not hold the process for its idle timeout.
        server.closeAllConnections()
      }),
  }
  return monitor
}

/** The series `/metrics` shows, every one labelled with the app. */
function createMetrics(app: string, now: () => number) {
  const registry = new Registry()
  registry.setDefaultLabels({ app })
  const metric = <T extends string>(name: string, help: string, labelNames: readonly T[] = []) => ({ name, help, labelNames, registers: [registry] })
  let lastReadAt: number | undefined
  const lastRead = new Gauge(metric('push_cache_last_store_read_timestamp_seconds', 'When the store last answered a read (Unix seconds).'))
  new Gauge({
    ...metric('push_cache_seconds_since_last_store_read', 'Seconds since the store last answered a read (-1: never).'),
    collect() {
      this.set(lastReadAt === undefined ? -1 : (now() - lastReadAt) / 1000)
    },
  })
  const failures = new Counter(metric('push_cache_failures_total', 'Failed store reads, updates and notifier connections.', ['kind'] as const))
  for (const kind of ['store', 'update', 'notifier'] satisfies FailureKind[]) failures.inc({ kind }, 0)
  const storeUp = new Gauge(metric('push_cache_store_up', '1 while the store answers, 0 after a failed read.'))
  return {
    registry,
    served: new Gauge(metric('push_cache_served_build_timestamp_seconds', 'Build timestamp the served directory holds (0: none yet).')),
    applied: new Counter(metric('push_cache_builds_applied_total', 'Builds switched into the served directory.')),
    downloaded: new Counter(metric('push_cache_downloaded_bytes_total', 'Bytes downloaded from the store.')),
    notifierUp: new Gauge(metric('push_cache_notifier_up', '1 while the notifier is connected.', ['notifier'] as const)),
    failures,
    storeUp,
    storeRead(at: number) {
      lastReadAt = at
      lastRead.set(Math.floor(at / 1000))
      storeUp.set(1)
    },
  }
}

type Answer = [status: number, body: string]

function createProbeServer(endpoints: { healthz(): Answer; readyz(): Answer; registry: Registry }): Server {
  const server = createServer(async (request, response) => {
    const path = new URL(request.url ?? '/', 'http://sidecar').pathname
    const answer = ([status, body]: Answer, type = 'text/plain; charset=utf-8') =>
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body)
    if (request.method !== 'GET' && request.method !== 'HEAD') return answer([405, 'method not allowed\n'])
    if (path === '/healthz') return answer(endpoints.healthz())
    if (path === '/readyz') return answer(endpoints.readyz())
    if (path === '/metrics') return answer([200, await endpoints.registry.metrics()], endpoints.registry.contentType)
    answer([404, 'not found: /healthz, /readyz, /metrics\n'])
  })
  // Probes may keep connections open; they must not hold the process once the watch ends.
  server.keepAliveTimeout = 5_000
  server.requestTimeout = 10_000
  return server
}

/** `9464`, `:9464`, `127.0.0.1:9464`, `[::1]:9464`; a bare port listens on every interface, as a pod's probes need. */
export function parseListenAddress(address: string): { host?: string; port: number } {
  const match = /^(?:(\[[^\]]+\]|[^:]*):)?(\d{1,5})$/.exec(address.trim())
  const port = Number(match?.[2])
  if (!match || port > 65535)
    throw invalidOption('--listen', `\`${address}\` is not an address to listen on`, 'Give a port (`9464`) or a host and port (`127.0.0.1:9464`).')
  const host = match[1]?.replace(/^\[|\]$/g, '')
  return { host: host || undefined, port }
}

function listen(server: Server, address: string): Promise<string> {
  const { host, port } = parseListenAddress(address)
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(invalidOption('--listen', `cannot listen on ${address} (${error.code ?? error.message})`, 'Choose a free port.')),
    )
    server.listen(port, host, () => {
      const bound = server.address() as AddressInfo
      resolve(bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`)
    })
  })
}
