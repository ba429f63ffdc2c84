import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { Redis } from 'iovalkey'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { pop } from '../../src/core/serve/pop'
import { listBuilds } from '../../src/core/store/builds'
import { createValkeyStore } from '../../src/stores/valkey'
import { type Fault, startFaultProxy } from '../helpers/fault-proxy'
import { QUICK, recordingLogger, release, SLACK_MS, stepBoundMs, timedPush } from '../helpers/faults'
import { fixture, rawClient, readTree, tempDir, uniqueApp, valkeyEnv } from '../helpers/valkey'
import { freePorts, startRedis } from '../setup/valkey-server'

const OLD = 1000
const NEW = 2000
const valkey = rawClient()
const proxy = await startFaultProxy(valkeyEnv().standalone)
const THROUGH_PROXY = `valkey://127.0.0.1:${proxy.port}`

/** Servers of this file's own (to restart, to make a replica of, to reload): stopped after it. */
const servers: ChildProcess[] = []
afterAll(() => {
  for (const server of servers) server.kill('SIGKILL')
})
afterEach(() => proxy.heal())

const directUrl = (port = valkeyEnv().standalone.port) => `valkey://127.0.0.1:${port}`
const options = (app: string, timestamp: number, store = directUrl()) => ({ app, store, timestamp, ...QUICK })

async function pushOld(app: string, store = directUrl()): Promise<void> {
  const { error } = await timedPush(options(app, OLD, store), await fixture(release('v1')))
  expect(error).toBeUndefined()
}

/**
 * What a reader may rely on after any fault: a failed build has no manifest and is no build
 * readers see, every build they see has all its keys, and pop serves exactly `tree`.
 */
async function expectServed(app: string, tree: Record<string, string | Uint8Array>, { failed, port }: { failed?: number; port?: number } = {}) {
  const client = port ? new Redis({ port, host: '127.0.0.1' }) : valkey
  const store = createValkeyStore(directUrl(port), {})
  try {
    if (failed !== undefined) expect(await client.exists(`manifest:${app}:${failed}`)).toBe(0)
    const builds = await listBuilds(store, app)
    if (failed !== undefined) expect(builds.map((build) => build.timestamp)).not.toContain(failed)
    for (const build of builds) for (const file of build.files) expect(await client.exists(`data:${app}:${build.timestamp}:${file}`), file).toBe(1)
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    expect(await readTree(dest)).toEqual(tree)
  } finally {
    await store.close()
    if (port) client.disconnect()
  }
}

describe('Valkey: transient faults are retried and the push completes', () => {
  it.each<[string, Fault, number]>([
    ['connections reset as soon as they open', { kind: 'reset' }, 2],
    ['the connection dropped mid-upload', { kind: 'drop', afterBytes: 256 * 1024 }, 1],
  ])('%s', async (_, fault, connections) => {
    const app = uniqueApp()
    await pushOld(app)
    const met = proxy.met
    proxy.fault(fault, connections)
    const files = release('v2', 6, { 'big.js': 'x'.repeat(1024 * 1024) })
    const { error } = await timedPush({ ...options(app, NEW, THROUGH_PROXY), retries: 3 }, await fixture(files))
    expect(error).toBeUndefined()
    expect(proxy.met - met).toBe(connections) // it met the fault, and connected again
    await expectServed(app, { ...release('v1'), ...files })
  })

  it('a server that pauses longer than the deadline: timed-out commands are retried once it answers again', async () => {
    const app = uniqueApp()
    const logger = recordingLogger()
    const files = release('v2', 40)
    const { error } = await timedPush({ ...options(app, NEW, THROUGH_PROXY), retries: 4 }, await fixture(files), {
      logger,
      onProgress: ({ done }) => {
        if (done.files !== 5) return
        proxy.fault({ kind: 'stall' })
        setTimeout(() => proxy.heal(), 1.5 * QUICK.requestTimeout)
      },
    })
    expect(error).toBeUndefined()
    expect(logger.warnings.join('\n')).toMatch(/timed out: a command got no reply within 500 ms/)
    await expectServed(app, files)
  })

  it('a server restarted mid-populate: the push reconnects, and the build is complete and durable', async () => {
    const app = uniqueApp()
    const dir = await tempDir()
    const [port] = (await freePorts(1)) as [number]
    const durable = ['--appendonly', 'yes', '--appendfsync', 'always']
    let server = await startRedis(dir, port, servers, durable)
    let restart: Promise<void> | undefined
    const files = release('v2', 60)
    const { error } = await timedPush({ app, store: directUrl(port), timestamp: NEW, retries: 3, concurrency: 4 }, await fixture(files), {
      onProgress: ({ done }) => {
        if (done.files !== 10 || restart) return
        restart = (async () => {
          server.kill('SIGKILL')
          await once(server, 'exit')
          server = await startRedis(dir, port, servers, durable)
        })()
      },
    })
    await restart
    expect(error).toBeUndefined()
    const client = new Redis({ port, host: '127.0.0.1' })
    expect(await client.ttl(`data:${app}:${NEW}:fed-mods.json`)).toBe(-1) // persisted: no expiry left
    expect(await client.exists(`lock:${app}:${NEW}`)).toBe(0)
    client.disconnect()
    await expectServed(app, files, { port })
  })

  it('a replica promoted during the push: READONLY is retried until it takes writes', async () => {
    const app = uniqueApp()
    const dir = await tempDir()
    const [primaryPort, replicaPort] = (await freePorts(2)) as [number, number]
    await startRedis(dir, primaryPort, servers, ['--repl-diskless-sync-delay', '0']) // the replica syncs at once
    await startRedis(dir, replicaPort, servers, ['--replicaof', '127.0.0.1', String(primaryPort)])
    const replica = new Redis({ port: replicaPort, host: '127.0.0.1' })
    await expect.poll(() => replica.info('replication'), { timeout: 10_000 }).toMatch(/master_link_status:up/)

    const logger = recordingLogger((line) => {
      if (/READONLY/.test(line) && logger.warnings.length === 1) void replica.replicaof('NO', 'ONE')
    })
    const files = release('v2')
    const { error } = await timedPush({ ...options(app, NEW, directUrl(replicaPort)), retries: 5 }, await fixture(files), { logger })
    expect(error).toBeUndefined()
    replica.disconnect()
    expect(logger.warnings[0]).toMatch(/valkey:\/\/127\.0\.0\.1:\d+ answered READONLY You can't write against a read only replica/)
    await expectServed(app, files, { port: replicaPort })
  })

  it('a server reloading its data set answers LOADING: retried until it is loaded', async () => {
    const app = uniqueApp()
    const dir = await tempDir()
    const [port] = (await freePorts(1)) as [number]
    // Loading answers clients every 64 KiB read, instead of every 2 MiB: LOADING comes sooner.
    await startRedis(dir, port, servers, ['--enable-debug-command', 'yes', '--loading-process-events-interval-bytes', '65536'])
    const admin = new Redis({ port, host: '127.0.0.1' })
    // Loading for real: a data set on disk (4 MB) that DEBUG RELOAD reads back while the push runs
    // (NOFLUSH MERGE keeps what the push wrote meanwhile).
    await admin.call('DEBUG', 'POPULATE', '100000', 'filler', '100')
    await admin.save()
    const logger = recordingLogger()
    let reload: Promise<unknown> | undefined
    const files = release('v2', 80)
    const { error } = await timedPush({ ...options(app, NEW, directUrl(port)), retries: 6, concurrency: 2 }, await fixture(files), {
      logger,
      onProgress: ({ done }) => {
        if (done.files === 5) reload ??= admin.call('DEBUG', 'RELOAD', 'NOFLUSH', 'MERGE', 'NOSAVE')
      },
    })
    expect(await reload).toBe('OK')
    admin.disconnect()
    expect(error).toBeUndefined()
    expect(logger.warnings.join('\n')).toMatch(/answered LOADING/)
    await expectServed(app, files, { port })
  })
})

describe('Valkey: a lasting fault fails the push within the bound, and leaves no visible build', () => {
  /** One step, then removing the partial build and releasing the lease (three commands that time out too) and closing (at most 1 s). */
  const bound = stepBoundMs(QUICK) + 3 * QUICK.requestTimeout + 1000

  // The first command takes the build's lock: a server that cannot be reached fails it, before any file.
  it.each<[string, Fault, string, RegExp]>([
    ['accepts and never answers', { kind: 'stall' }, 'STORE_TIMEOUT', /timed out: the server was not ready for commands within 300 ms/],
    ['answers at a trickle', { kind: 'trickle', bytesPerSecond: 20 }, 'STORE_TIMEOUT', /timed out: the server was not ready for commands within 300 ms/],
    ['resets every connection', { kind: 'reset' }, 'STORE_UNREACHABLE', /Cannot connect to valkey:\/\/127\.0\.0\.1:\d+: .*ECONNRESET/],
    [
      'drops every connection mid-upload',
      { kind: 'drop', afterBytes: 1024 },
      'UPLOAD_FAILED',
      /timed out: a command got no reply within 500 ms|Lost the connection/,
    ],
  ])('a server that %s', async (_, fault, code, reason) => {
    const app = uniqueApp()
    await pushOld(app)
    proxy.fault(fault)
    const { error, ms } = await timedPush(options(app, NEW, THROUGH_PROXY), await fixture(release('v2', 6, { 'big.js': 'x'.repeat(64 * 1024) })))
    expect(error).toMatchObject({ code })
    expect(error?.message).toContain(THROUGH_PROXY)
    expect(error?.message).toMatch(reason)
    expect(ms).toBeLessThan(bound + SLACK_MS)
    await expectServed(app, release('v1'), { failed: NEW })
  })

  it('a server that stops answering mid-push', async () => {
    const app = uniqueApp()
    await pushOld(app)
    let stalledAt = 0
    const { error } = await timedPush(options(app, NEW, THROUGH_PROXY), await fixture(release('v2', 40)), {
      onProgress: ({ done }) => {
        if (done.files !== 5 || stalledAt) return
        stalledAt = Date.now()
        proxy.fault({ kind: 'stall' })
      },
    })
    // Whichever step met the stall (a file, or making the written keys permanent) names it.
    expect(error?.message).toMatch(/timed out: a command got no reply within 500 ms.*`requestTimeout` \(--request-timeout\)/)
    expect(Date.now() - stalledAt).toBeLessThan(bound + SLACK_MS)
    proxy.heal()
    await expectServed(app, release('v1'), { failed: NEW })
  })

  it('a replica that is never promoted: READONLY until the retries run out', async () => {
    const app = uniqueApp()
    const dir = await tempDir()
    const [primaryPort, replicaPort] = (await freePorts(2)) as [number, number]
    await startRedis(dir, primaryPort, servers)
    await startRedis(dir, replicaPort, servers, ['--replicaof', '127.0.0.1', String(primaryPort)])
    const { error, ms } = await timedPush(options(app, NEW, directUrl(replicaPort)), await fixture(release('v2')))
    expect(error).toMatchObject({ code: 'STORE_UNREACHABLE' }) // the lock, the first write
    expect(error?.message).toMatch(/answered READONLY/)
    expect(ms).toBeLessThan(bound + SLACK_MS)
    const store = createValkeyStore(directUrl(replicaPort), {})
    expect(await listBuilds(store, app)).toEqual([])
    await store.close()
  })
})
