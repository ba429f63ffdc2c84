import { type ChildProcess, spawn } from 'node:child_process'
import { readdir, readFile, readlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import { SERVER_CONFIG_FILES } from '../../src/core/serve/served-dir'
import type { Store } from '../../src/core/store/store'
import { createS3Store } from '../../src/stores/s3'
import { createValkeyStore } from '../../src/stores/valkey'
import { CLI, closedPort, runCli, writeTree } from '../helpers/cli'
import { createBucket, s3CliEnv, s3StoreOptions, s3StoreUrl } from '../helpers/s3'
import { assets, fixture, push, rawClient, readTree, tempDir, uniqueApp, valkeyUrl } from '../helpers/valkey'
import { vwatchEnv, vwatchStats, waitForStats } from '../helpers/vwatch'
import { freePorts, startRedis } from '../setup/valkey-server'

const valkey = rawClient()
/** Short enough to keep the tests quick; the defaults are 10 s to 5 min. */
const FAST_BACKOFF = ['--backoff-min', '200ms', '--backoff-max', '1s']

const buildOf = (version: string, count = 5) => ({ ...assets(count, version), 'index.html': version, 'fed-mods.json': version })

interface Running {
  child: ChildProcess
  /** `--json` events so far, each with the time it arrived here (`receivedAt`). */
  events: { event: string; [field: string]: unknown }[]
  stderr(): string
  /** Resolves to the first event that matches, failing after `ms`. */
  waitFor(match: (event: Running['events'][number]) => boolean, ms?: number): Promise<Running['events'][number]>
  /** SIGTERM (or `signal`), then the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

const running: Running[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((watcher) => watcher.stop('SIGKILL')))
})

/** `push-cache watch ... --json` as a user runs it, in its own process. */
function startWatch(args: string[], env: Record<string, string> = {}): Running {
  const child = spawn(process.execPath, [CLI, 'watch', ...args, '--json'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const events: Running['events'] = []
  let stdout = ''
  let stderr = ''
  const waiters = new Set<() => void>()
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk
    const lines = stdout.split('\n')
    stdout = lines.pop()!
    for (const line of lines) if (line) events.push({ ...JSON.parse(line), receivedAt: Date.now() })
    for (const waiter of waiters) waiter()
  })
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const watcher: Running = {
    child,
    events,
    stderr: () => stderr,
    waitFor(match, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(match)
          if (!found) return
          cleanup()
          resolve(found)
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`no matching event within ${ms} ms; events: ${JSON.stringify(events)}\nstderr: ${stderr}`))
        }, ms)
        const cleanup = () => {
          clearTimeout(timer)
          waiters.delete(check)
        }
        waiters.add(check)
        check()
      })
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
  running.push(watcher)
  return watcher
}

const applied = (timestamp: number) => (event: Running['events'][number]) => event.event === 'applied' && event.timestamp === timestamp
const lines = (text: string, pattern: RegExp) => text.split('\n').filter((line) => pattern.test(line))

/** A redis-server of this test's own, to kill and start again on the same port. */
async function ownValkey() {
  const [port] = await freePorts(1)
  const dir = await tempDir()
  const url = `valkey://127.0.0.1:${port}`
  let server = await startRedis(dir, port!)
  const stores: Store[] = []
  // An afterEach registered inside a test never runs: each of these servers outlived the run.
  onTestFinished(() => {
    server.kill('SIGKILL')
  })
  return {
    url,
    async push(files: Record<string, string>, app: string, timestamp: number) {
      const store = createValkeyStore(url, {})
      stores.push(store)
      try {
        await push(store, await fixture(files), { app, timestamp })
      } finally {
        await store.close()
      }
    },
    async kill() {
      const gone = new Promise((resolve) => server.once('exit', resolve))
      server.kill('SIGKILL')
      await gone
    },
    async start() {
      server = await startRedis(dir, port!)
    },
  }
}

describe('push-cache watch', () => {
  it('applies a build announced on the Valkey channel within a second, long before the next poll', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(buildOf('v1')), { app, timestamp: 100 })
    const dest = join(await tempDir(), 'www')
    const channel = `push-cache:builds:${app}`
    const watcher = startWatch([dest, '--app', app, '--store', valkeyUrl(), '--channel', channel, '--poll', '10m', ...FAST_BACKOFF])
    await watcher.waitFor(applied(100))
    await watcher.waitFor((event) => event.event === 'notifier-connected')

    // Another app's announcement on the same channel is not a hint for this one.
    await valkey.publish(channel, JSON.stringify({ app: 'some-other-app', timestamp: 300 }))
    // populate PUBLISHes each build it pushed on the channel, after its manifest.
    await push(store, await fixture(buildOf('v2')), { app, timestamp: 200, announce: { channel } })
    const pushed = Date.now()
    await store.close()
    const latency = ((await watcher.waitFor(applied(200), 5_000)).receivedAt as number) - pushed
    expect(latency).toBeLessThan(1_000)
    expect(await readTree(dest)).toEqual(buildOf('v2'))
    expect(await watcher.stop()).toBe(0)
    console.info(`Valkey channel: build applied ${latency} ms after the push returned`)
  })

  it('applies a build announced on vwatch within a second, long before the next poll', async () => {
    const app = uniqueApp()
    const name = `push-cache/${app}`
    const store = createValkeyStore(valkeyUrl(), {})
    // populate announces each build it pushed on vwatch's write port, as the Job in deploy/ does.
    const announce = { vwatch: vwatchEnv().write }
    await push(store, await fixture(buildOf('v1')), { app, timestamp: 100, announce })
    const dest = join(await tempDir(), 'www')
    const watcher = startWatch([dest, '--app', app, '--store', valkeyUrl(), '--vwatch', vwatchEnv().read, '--poll', '10m', ...FAST_BACKOFF])
    await watcher.waitFor(applied(100))
    // Its long-poll now holds, on the version dest serves.
    await waitForStats(name, (stats) => stats.waiting === 1)

    await push(store, await fixture(buildOf('v2')), { app, timestamp: 200, announce })
    const pushed = Date.now()
    await store.close()
    expect((await vwatchStats(name)).version).toBe('200')
    // The push announces last, after its manifest, and returns: the watch applies the build soon after (or before).
    const latency = ((await watcher.waitFor(applied(200), 5_000)).receivedAt as number) - pushed
    expect(latency).toBeLessThan(1_000)
    expect(await readTree(dest)).toEqual(buildOf('v2'))
    expect(watcher.events.find((event) => event.event === 'notifier-connected')).toMatchObject({ notifier: `vwatch ${vwatchEnv().read} (${name})` })
    console.info(`vwatch: build applied ${latency} ms after the push returned`)
  })

  it('with polling only (vwatch down), applies a new S3 build within one interval, downloading only what changed', async () => {
    const bucket = await createBucket()
    const store = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
    const app = 'shop'
    await push(store, await fixture(buildOf('v1')), { app, timestamp: 100 })
    const dest = join(await tempDir(), 'www')
    const vwatch = `http://127.0.0.1:${await closedPort()}`
    const watcher = startWatch([dest, '--app', app, '--store', s3StoreUrl(bucket), '--vwatch', vwatch, '--poll', '1s', ...FAST_BACKOFF], s3CliEnv())
    await watcher.waitFor(applied(100))
    expect(await watcher.waitFor((event) => event.event === 'notifier-lost')).toMatchObject({ error: expect.stringMatching(/ECONNREFUSED/) })

    await push(store, await fixture({ ...buildOf('v1'), 'index.html': 'v2', 'fed-mods.json': 'v2' }), { app, timestamp: 200 })
    await store.close()
    const pushed = Date.now()
    const event = await watcher.waitFor(applied(200), 5_000)
    const latency = Date.now() - pushed
    // The catch-up that applied it began within one interval of the push (plus a little scheduling).
    expect(latency - (event.durationMs as number)).toBeLessThan(1_000 + 300)
    expect(event).toMatchObject({ downloaded: { files: 2 }, unchanged: { files: 5 } })
    expect(await readFile(join(dest, 'fed-mods.json'), 'utf8')).toBe('v2')
    // One line for the lost notifier, not one per retry.
    expect(watcher.events.filter((event) => event.event === 'notifier-lost')).toHaveLength(1)
    expect(lines(watcher.stderr(), /vwatch .*: lost \(/)).toHaveLength(1)
    console.info(`polling every 1 s: build applied ${latency} ms after the push`)
  })

  it('keeps serving while the store is down, logs one "lost" and one "back" line, and catches up within one backoff step', async () => {
    const server = await ownValkey()
    const app = uniqueApp()
    await server.push(buildOf('v1'), app, 100)
    const dest = join(await tempDir(), 'www')
    const watcher = startWatch([dest, '--app', app, '--store', server.url, '--poll', '300ms', ...FAST_BACKOFF])
    await watcher.waitFor(applied(100))

    await server.kill()
    await watcher.waitFor((event) => event.event === 'store-lost')
    // Several retries fail while it is down; dest serves v1 throughout.
    await sleep(2_500)
    expect(await readTree(dest)).toEqual(buildOf('v1'))

    await server.start()
    const back = Date.now()
    await server.push(buildOf('v2'), app, 200)
    await watcher.waitFor((event) => event.event === 'store-back', 2_000)
    const backAfter = Date.now() - back
    expect(backAfter).toBeLessThan(1_000 + 500) // the longest backoff step, plus a catch-up
    await watcher.waitFor(applied(200), 2_000)
    expect(await readTree(dest)).toEqual(buildOf('v2'))
    expect(await watcher.stop()).toBe(0)
    expect(lines(watcher.stderr(), / lost: /)).toHaveLength(1)
    expect(lines(watcher.stderr(), / is back$/)).toHaveLength(1)
    expect(watcher.events.filter((event) => event.event === 'store-lost')).toHaveLength(1)
  })

  it('started while the store is down, serves what dest holds and catches up once the store is back', async () => {
    const server = await ownValkey()
    const app = uniqueApp()
    await server.push(buildOf('v1'), app, 100)
    const dest = join(await tempDir(), 'www')
    expect((await runCli(['watch', dest, '--app', app, '--store', server.url, '--once'])).code).toBe(0)
    await server.kill()

    const watcher = startWatch([dest, '--app', app, '--store', server.url, '--poll', '300ms', ...FAST_BACKOFF])
    expect(await watcher.waitFor((event) => event.event === 'serving')).toMatchObject({ timestamp: 100, files: 7 })
    await watcher.waitFor((event) => event.event === 'store-lost')
    expect(await readTree(dest)).toEqual(buildOf('v1'))

    await server.start()
    await server.push(buildOf('v2'), app, 200)
    await watcher.waitFor(applied(200), 3_000)
    expect(await readTree(dest)).toEqual(buildOf('v2'))
  })

  it('--once exits 1 with the store down and leaves dest as it was; a build older than the one held never replaces it', async () => {
    const server = await ownValkey()
    const app = uniqueApp()
    await server.push(buildOf('v2'), app, 200)
    const dest = join(await tempDir(), 'www')
    expect((await runCli(['watch', dest, '--app', app, '--store', server.url, '--once'])).code).toBe(0)
    const served = await readlink(dest)

    // The store now holds only an older build (a restored snapshot, say).
    await server.kill()
    const down = await runCli(['watch', dest, '--app', app, '--store', server.url, '--once'])
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/ECONNREFUSED/)
    await server.start()
    await server.push(buildOf('v1'), app, 100)
    const older = await runCli(['watch', dest, '--app', app, '--store', server.url, '--once', '--json'])
    expect(older.code).toBe(0)
    expect(older.stdout).toContain('"event":"kept"')
    expect(await readlink(dest)).toBe(served)
    expect(await readTree(dest)).toEqual(buildOf('v2'))
  })

  it('stopped by SIGTERM in the middle of a large update, leaves the old build whole and no directory behind', async () => {
    const bucket = await createBucket()
    const store = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
    const app = 'shop'
    const big = (version: string) => Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`js/chunk-${i}.js`, `${version} ${'x'.repeat(100_000)}`]))
    await push(store, await fixture({ ...big('v1'), 'fed-mods.json': 'v1' }), { app, timestamp: 100, concurrency: 16 })
    const dest = join(await tempDir(), 'www')
    const storeFlags = ['--app', app, '--store', s3StoreUrl(bucket)]
    expect((await runCli(['watch', dest, ...storeFlags, '--once'], { env: s3CliEnv() })).code).toBe(0)
    // One download at a time, so that the update takes long enough to be caught in the middle.
    const watcher = startWatch([dest, ...storeFlags, '--poll', '300ms', '--concurrency', '1', ...FAST_BACKOFF], s3CliEnv())
    await watcher.waitFor((event) => event.event === 'up-to-date')

    await push(store, await fixture({ ...big('v2'), 'fed-mods.json': 'v2' }), { app, timestamp: 200, concurrency: 16 })
    await store.close()
    // Wait until the new build directory is being filled, then stop the watch.
    const builds = join(dirname(dest), '.www.builds')
    const deadline = Date.now() + 10_000
    let filling: string | undefined
    while (!filling && Date.now() < deadline) {
      const names = await readdir(builds)
      const fresh = names.find((name) => name.startsWith('200-') && !names.includes(`${name}.json`))
      if (fresh && (await readdir(join(builds, fresh, 'js')).catch(() => [])).length > 3) filling = fresh
      else await sleep(10)
    }
    expect(filling, 'the update was caught in the middle').toBeDefined()
    expect(await watcher.stop('SIGTERM')).toBe(0)

    const served = await readTree(dest)
    expect(served['fed-mods.json']).toBe('v1')
    expect(Object.values(served).every((content) => content.startsWith('v1'))).toBe(true)
    expect(Object.keys(served)).toHaveLength(31)
    const left = (await readdir(builds)).filter((name) => !(SERVER_CONFIG_FILES as readonly string[]).includes(name))
    expect(left.filter((name) => !name.endsWith('.json')).every((name) => left.includes(`${name}.json`))).toBe(true) // no half-filled directory
    expect(left.some((name) => name.startsWith('200-'))).toBe(false)
  })

  it('refuses --channel with a store that is not Valkey, and a malformed --poll, as bad usage (exit 2)', async () => {
    const dest = join(await tempDir(), 'www')
    const channel = await runCli(['watch', dest, '--app', 'a', '--store', await tempDir(), '--channel', 'builds', '--once'])
    expect(channel.code).toBe(2)
    expect(channel.stderr).toMatch(/Option `--channel` needs a Valkey store.*--vwatch/)
    const poll = await runCli(['watch', dest, '--app', 'a', '--store', await tempDir(), '--poll', 'often'])
    expect(poll.code).toBe(2)
    expect(poll.stderr).toMatch(/Option `--poll` is "often", not a duration/)
  })
})

/** A local store in a fresh directory, and a push of `buildOf(version)` into it with the CLI. */
async function localStore() {
  const work = await tempDir()
  const app = uniqueApp()
  const store = `file:${join(work, 'store')}`
  const push = async (version: string, timestamp: number) => {
    const dist = await writeTree(join(work, `dist-${version}`), buildOf(version))
    expect((await runCli(['populate', dist, '--app', app, '--store', store, '--timestamp', String(timestamp)])).code).toBe(0)
  }
  return { work, app, store, push }
}

describe('watch --listen', () => {
  it('answers the probes and a real scrape of /metrics as builds are applied', async () => {
    const { work, app, store, push } = await localStore()
    const port = await closedPort()
    const get = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${port}${path}`)
      return { status: response.status, body: await response.text() }
    }
    const watcher = startWatch([
      join(work, 'www', app),
      '--app',
      app,
      '--store',
      store,
      '--poll',
      '200ms',
      ...FAST_BACKOFF,
      '--listen',
      `127.0.0.1:${port}`,
      '--log-format',
      'json',
    ])
    await watcher.waitFor((event) => event.event === 'serving')
    // --log-format json: every stderr line is one JSON object.
    const logged = watcher
      .stderr()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { level: string; message: string })
    expect(logged).toContainEqual(expect.objectContaining({ level: 'info', message: `serving /healthz, /readyz and /metrics on http://127.0.0.1:${port}` }))
    expect((await get('/healthz')).status).toBe(200)
    expect(await get('/readyz')).toEqual({ status: 503, body: 'no complete build served yet\n' })

    await push('v1', 1700000100)
    await watcher.waitFor(applied(1700000100))

    expect(await get('/readyz')).toEqual({ status: 200, body: 'ready\n' })
    const { body } = await get('/metrics')
    expect(body).toContain(`push_cache_served_build_timestamp_seconds{app="${app}"} 1700000100`)
    expect(body).toContain(`push_cache_builds_applied_total{app="${app}"} 1`)
    expect(body).toContain(`push_cache_store_up{app="${app}"} 1`)
    expect(body).toMatch(new RegExp(`push_cache_seconds_since_last_store_read\\{app="${app}"\\} \\d+(\\.\\d+)?\\n`))
    expect(body).toMatch(new RegExp(`push_cache_downloaded_bytes_total\\{app="${app}"\\} [1-9]\\d*\\n`))

    expect(await watcher.stop()).toBe(0)
    await expect(get('/healthz')).rejects.toThrow()
  })
})

describe('a newer build with the same files', () => {
  it('is said up to date under its timestamp, not applied from the old directory', async () => {
    const { work, app, store, push } = await localStore()
    await push('v1', 1700000100)
    const watcher = startWatch([join(work, 'www', app), '--app', app, '--store', store, '--poll', '200ms', ...FAST_BACKOFF])
    await watcher.waitFor(applied(1700000100))
    await push('v1', 1700000200)
    await watcher.waitFor((event) => event.event === 'up-to-date' && event.timestamp === 1700000200)
    expect(watcher.events.filter((event) => event.event === 'applied')).toHaveLength(1)
    expect(watcher.stderr()).toContain('build 1700000200 holds the files')
  })
})
