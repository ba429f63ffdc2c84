import { afterEach, describe, expect, it } from 'vitest'
import type { WatchEvent } from '../../src/core/serve/watch'
import { createWatchMonitor, parseListenAddress, type WatchMonitor } from '../../src/sidecar/monitor'

const opened: WatchMonitor[] = []
afterEach(async () => {
  await Promise.all(opened.splice(0).map((monitor) => monitor.close()))
})

async function started(now: () => number = Date.now, staleAfterMs = 60_000) {
  const monitor = createWatchMonitor({ app: 'shop', staleAfterMs, now })
  opened.push(monitor)
  await monitor.listen('127.0.0.1:0')
  const get = async (path: string) => {
    const response = await fetch(`http://${monitor.address}${path}`)
    return { status: response.status, type: response.headers.get('content-type'), body: await response.text() }
  }
  return { monitor, get }
}

/** The event of a build switched in, `downloaded` bytes of it fetched. */
const applied = (timestamp: number, downloaded: number): WatchEvent => ({
  event: 'applied',
  timestamp,
  files: 3,
  bytes: 30,
  downloaded: { files: 2, bytes: downloaded },
  unchanged: { files: 1, bytes: 10 },
  build: `${timestamp}-x`,
  durationMs: 5,
  headerRules: { exceptions: 0, reloadNeeded: false },
})

const sample = (metrics: string, name: string) => metrics.split('\n').find((line) => line.startsWith(name))

describe('watch --listen', () => {
  it('is live at once, ready only once dest holds a complete build', async () => {
    const { monitor, get } = await started()
    expect((await get('/healthz')).status).toBe(200)
    expect(await get('/readyz')).toMatchObject({ status: 503, body: 'no complete build served yet\n' })
    monitor.onEvent({ event: 'serving', dest: '/srv', files: 0 })
    expect((await get('/readyz')).status).toBe(503)
    monitor.onEvent(applied(1_700_000_000, 20))
    expect(await get('/readyz')).toMatchObject({ status: 200, body: 'ready\n' })
  })

  it('reports liveness failed when no catch-up ended within the bound', async () => {
    let clock = 1_000_000
    const { monitor, get } = await started(() => clock, 10_000)
    clock += 10_001
    expect(await get('/healthz')).toMatchObject({ status: 503, body: 'watch loop silent for 10 s\n' })
    monitor.attempted(false)
    expect((await get('/healthz')).status).toBe(200)
  })

  it('serves Prometheus metrics a scrape can read', async () => {
    let clock = 1_700_000_100_000
    const { monitor, get } = await started(() => clock)
    const before = await get('/metrics')
    expect(before.type).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(sample(before.body, 'push_cache_seconds_since_last_store_read')).toBe('push_cache_seconds_since_last_store_read{app="shop"} -1')

    monitor.onEvent({ event: 'serving', dest: '/srv', timestamp: 1_700_000_000, files: 3 })
    monitor.attempted(true)
    monitor.onEvent(applied(1_700_000_050, 2048))
    monitor.onEvent({ event: 'store-lost', store: 's3://b', error: 'ECONNREFUSED' })
    monitor.onEvent({ event: 'notifier-connected', notifier: 'vwatch' })
    monitor.onEvent({ event: 'notifier-lost', notifier: 'vwatch', error: 'reset' })
    clock += 42_000

    const { body } = await get('/metrics')
    expect(sample(body, 'push_cache_served_build_timestamp_seconds')).toBe('push_cache_served_build_timestamp_seconds{app="shop"} 1700000050')
    expect(sample(body, 'push_cache_seconds_since_last_store_read')).toBe('push_cache_seconds_since_last_store_read{app="shop"} 42')
    expect(sample(body, 'push_cache_builds_applied_total')).toBe('push_cache_builds_applied_total{app="shop"} 1')
    expect(sample(body, 'push_cache_downloaded_bytes_total')).toBe('push_cache_downloaded_bytes_total{app="shop"} 2048')
    expect(sample(body, 'push_cache_store_up')).toBe('push_cache_store_up{app="shop"} 0')
    expect(body).toContain('push_cache_failures_total{kind="store",app="shop"} 1')
    expect(body).toContain('push_cache_failures_total{kind="update",app="shop"} 0')
    expect(body).toContain('push_cache_failures_total{kind="notifier",app="shop"} 1')
    expect(body).toContain('push_cache_notifier_up{notifier="vwatch",app="shop"} 0')
  })

  it('answers anything else with 404 naming the endpoints', async () => {
    const { get } = await started()
    expect(await get('/')).toMatchObject({ status: 404, body: 'not found: /healthz, /readyz, /metrics\n' })
  })

  it('takes a port, or a host and port, and refuses anything else naming the option', () => {
    expect(parseListenAddress('9464')).toEqual({ host: undefined, port: 9464 })
    expect(parseListenAddress(':9464')).toEqual({ host: undefined, port: 9464 })
    expect(parseListenAddress('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 })
    expect(parseListenAddress('[::1]:9464')).toEqual({ host: '::1', port: 9464 })
    expect(() => parseListenAddress('http://x:1')).toThrow(/--listen.*not an address to listen on/)
    expect(() => parseListenAddress('70000')).toThrow(/--listen/)
  })

  it('says which address is taken', async () => {
    const { monitor } = await started()
    const second = createWatchMonitor({ app: 'shop', staleAfterMs: 1000 })
    await expect(second.listen(monitor.address!)).rejects.toThrow(/--listen.*cannot listen on .*EADDRINUSE/)
  })
})
