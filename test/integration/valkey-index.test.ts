import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Cluster, Redis } from 'iovalkey'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prune } from '../../src/core/prune/prune'
import { pop } from '../../src/core/serve/pop'
import { watch } from '../../src/core/serve/watch'
import { listBuilds, listKeys } from '../../src/core/store/builds'
import type { Store } from '../../src/core/store/store'
import { createValkeyStore } from '../../src/stores/valkey'
import type { ValkeyOptions } from '../../src/stores/valkey-options'
import { appKeys, assets, fixture, push, rawClient, readTree, tempDir, uniqueApp, valkeyEnv, valkeyUrl } from '../helpers/valkey'
import { freePorts, startCluster, startRedis } from '../setup/valkey-server'

const FOREIGN_KEYS = 50_000
const HOST = '127.0.0.1'
const servers: ChildProcess[] = []
afterAll(() => {
  for (const server of servers) server.kill('SIGKILL')
})

/** A server of this file alone, so that `INFO commandstats` counts our commands only. */
interface Server {
  url: string
  client: Redis | Cluster
  masters(): Redis[]
}

async function singleNode(): Promise<Server> {
  const [port] = (await freePorts(1)) as [number]
  await startRedis(await tempDir(), port, servers)
  const client = new Redis({ host: HOST, port })
  return { url: `valkey://${HOST}:${port}`, client, masters: () => [client] }
}

async function cluster(): Promise<Server> {
  const ports = await freePorts(6)
  await startCluster(
    await tempDir(),
    [0, 1, 2].map((i) => ({ port: ports[i]!, busPort: ports[i + 3]! })),
    servers,
  )
  const client = new Cluster([{ host: HOST, port: ports[0]! }], { enableAutoPipelining: true })
  await client.ping()
  return { url: `valkey+cluster://${HOST}:${ports[0]}`, client, masters: () => client.nodes('master') }
}

/** Other apps' keys, pipelined: every listing by SCAN would walk them. */
async function fillForeign({ client }: Server): Promise<void> {
  for (let start = 0; start < FOREIGN_KEYS; start += 5000)
    await Promise.all(Array.from({ length: 5000 }, (_, i) => client.set(`data:other-app:${1000 + ((start + i) % 7)}:js/file-${start + i}.js`, 'x')))
}

/** Calls of `command` on every master since the last reset. */
async function calls(server: Server, command: string): Promise<number> {
  const infos = await Promise.all(server.masters().map((master) => master.info('commandstats')))
  return infos.reduce((total, info) => total + Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0), 0)
}
const scans = (server: Server) => calls(server, 'scan')
const resetStats = (server: Server) => Promise.all(server.masters().map((master) => master.config('RESETSTAT')))

/** Populate, ls, pop, watch --once and prune of `app`, as the CLI runs them, each with its own client. */
async function everyCommand(server: Server, app: string, timestamp: number, options: ValkeyOptions): Promise<void> {
  const open = async (): Promise<Store> => createValkeyStore(server.url, options)
  const use = async <T>(work: (store: Store) => Promise<T>): Promise<T> => {
    const store = await open()
    try {
      return await work(store)
    } finally {
      await store.close()
    }
  }
  await use(async (store) => push(store, await fixture({ ...assets(40, String(timestamp)), 'fed-mods.json': String(timestamp) }), { app, timestamp }))
  expect((await use((store) => listBuilds(store, app)))[0]?.timestamp).toBe(timestamp)
  const dest = join(await tempDir(), 'www')
  await use((store) => pop({ store, app, dest }))
  expect((await readTree(dest))['fed-mods.json']).toBe(String(timestamp))
  await watch({ createStore: open, app, dest: join(await tempDir(), 'www'), once: true })
  await use((store) => prune({ store, app, rule: { now: timestamp + 10, olderThanSeconds: 1, keep: 1 }, entrypoints: ['fed-mods.json'] }))
}

describe.each([
  ['a single node', singleNode],
  ['a 3-master cluster', cluster],
])('an app listed from its index on %s', (_, start) => {
  let server: Server
  beforeAll(async () => {
    server = await start()
    await fillForeign(server)
  }, 60_000)
  afterAll(() => server.client.disconnect())

  it(`populate, ls, pop, watch and prune issue no SCAN among ${FOREIGN_KEYS.toLocaleString('en')} foreign keys, after one that adopts the app`, async () => {
    const app = uniqueApp()
    await resetStats(server)
    await everyCommand(server, app, 1000, {})
    // The first listing of the app ever scanned the keyspace once (every master), to adopt valpop's builds.
    const adoption = await scans(server)
    expect(adoption).toBeGreaterThanOrEqual(FOREIGN_KEYS / 1000)
    expect(adoption).toBeLessThan((2 * FOREIGN_KEYS) / 1000)

    await resetStats(server)
    await everyCommand(server, app, 2000, {})
    expect(await scans(server)).toBe(0)
    // Both builds' keys are listed, and the pruned build's are gone.
    const listed = await createValkeyStore(server.url, {})
    expect((await listKeys(listed, `data:${app}:`)).sort()).toEqual((await appKeys(server.client, app)).filter((key) => key.startsWith('data:')))
    await listed.close()
  })

  it('a push sends the index entries of the keys it writes at once in one ZADD, not one each', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(server.url, {})
    await resetStats(server)
    await push(store, await fixture(assets(300, 'a')), { app, timestamp: 1000 })
    const zadds = await calls(server, 'zadd')
    expect((await listKeys(store, `data:${app}:`)).sort()).toEqual((await appKeys(server.client, app)).filter((key) => key.startsWith('data:')))
    await store.close()
    expect(zadds).toBeLessThan(30)
  })

  it("with `scan: 'never'`, a new app costs no SCAN at all", async () => {
    await resetStats(server)
    await everyCommand(server, uniqueApp(), 1000, { scan: 'never' })
    expect(await scans(server)).toBe(0)
  })
})

describe('index entries', () => {
  const valkey = rawClient()

  it('of keys that expired leave the index once stale; a fresh one stays (its write may still land)', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    const [stale, fresh] = [`data:${app}:1000:stale.js`, `data:${app}:1000:fresh.js`]
    await store.put(stale, Buffer.from('a'), { expiresIn: 1 })
    await store.put(fresh, Buffer.from('b'), { expiresIn: 1 })
    const index = `push-cache-index:{${app}}:data`
    expect(await valkey.zcard(index)).toBe(2)
    await sleep(1100)
    // As if written an hour ago.
    await valkey.zadd(index, 'XX', Date.now() - 3_600_000, stale)
    expect(await listKeys(store, `data:${app}:`)).toEqual([])
    expect(await valkey.zrange(index, 0, -1)).toEqual([fresh])
    await store.close()
  })
})

/**
 * Issue #16 case 6: a populate killed in the middle of its PERSIST round. Its client's user is
 * deleted halfway through the round: the rest of the round, the clean-up and the lock's release
 * never reach the server, as if the process had died. With `lockTtl: 1` the manifest (written with
 * an expiry, persisted after the data) is gone after 1 s and the lock after 2 s.
 */
async function killedInPersist(app: string, timestamp: number): Promise<string[]> {
  const valkey = rawClient()
  await valkey.acl('SETUSER', app, 'on', '>pw', '~*', '&*', '+@all')
  const { host, port } = valkeyEnv().standalone
  const pusher = createValkeyStore(`valkey://${app}:pw@${host}:${port}`, { lockTtl: 1 })
  let persisted: string[] = []
  const dying: Store = {
    ...pusher,
    async persist(keys) {
      persisted = keys.slice(0, Math.ceil(keys.length / 2))
      await pusher.persist!(persisted)
      await valkey.acl('DELUSER', app)
      return pusher.persist!(keys.slice(persisted.length))
    },
  }
  const files = { ...assets(30, String(timestamp)), 'fed-mods.json': String(timestamp) }
  await expect(push(dying, await fixture(files), { app, timestamp, retries: 0 }, { writerLock: { seconds: 1, waitMs: 5000 } })).rejects.toThrow()
  await pusher.close()
  await sleep(2100)
  return persisted
}

describe('a populate killed mid-PERSIST (issue #16 case 6)', () => {
  const valkey = rawClient()
  const pruneNow = (store: Store, app: string) =>
    prune({
      store,
      app,
      rule: { now: Date.now() / 1000, olderThanSeconds: 3600, keep: 3 },
      entrypoints: ['fed-mods.json'],
      writerLock: { seconds: 1, waitMs: 5000 },
    })

  it('leaves keys that a prune removes once provably dead, and the complete build untouched', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), { lockTtl: 1 })
    await push(store, await fixture({ ...assets(30, 'v1'), 'fed-mods.json': 'v1' }), { app, timestamp: 1000 })
    const complete = await appKeys(valkey, app)
    const orphans = await killedInPersist(app, 2000)
    expect(orphans.length).toBeGreaterThan(10)
    // What the kill left: persisted data keys, no manifest, no lock.
    expect(await appKeys(valkey, app)).toEqual([...complete, ...orphans].sort())
    expect(await Promise.all(orphans.map((key) => valkey.ttl(key)))).toEqual(orphans.map(() => -1))

    const report = await pruneNow(store, app)
    expect(report.keys.sort()).toEqual(orphans.sort())
    expect(await appKeys(valkey, app)).toEqual(complete)
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    expect(await readTree(dest)).toEqual({ ...assets(30, 'v1'), 'fed-mods.json': 'v1' })
    await store.close()
  })

  it("of an app's first build: pop serves no half build, and a prune removes the keys", async () => {
    const app = uniqueApp()
    const orphans = await killedInPersist(app, 2000)
    const store = createValkeyStore(valkeyUrl(), { lockTtl: 1 })
    await expect(pop({ store, app, dest: join(await tempDir(), 'www') })).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED' })
    expect((await pruneNow(store, app)).keys.sort()).toEqual(orphans.sort())
    expect(await appKeys(valkey, app)).toEqual([])
    await store.close()
  })

  it('keeps them while they may be a living push: younger than twice `lockTtl`', async () => {
    const app = uniqueApp()
    const orphans = await killedInPersist(app, 2000)
    const store = createValkeyStore(valkeyUrl(), { lockTtl: 60 })
    expect((await pruneNow(store, app)).keys).toEqual([])
    expect((await appKeys(valkey, app)).filter((key) => key.startsWith('data:'))).toEqual(orphans.sort())
    await store.close()
  })
})
