import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { pop } from '../../src/core/serve/pop'
import { listBuilds } from '../../src/core/store/builds'
import { createValkeyStore } from '../../src/stores/valkey'
import { appKeys, assets, fixture, push, rawClient, readTree, tempDir, uniqueApp, valkeyEnv, valkeyUrl } from '../helpers/valkey'
import { freePorts, startRedis } from '../setup/valkey-server'

const valkey = rawClient()

describe('a build is visible at once or not at all', () => {
  it('leaves no visible partial build when the connection dies mid-populate, and its keys expire before its lock', async () => {
    const app = uniqueApp()
    const admin = createValkeyStore(valkeyUrl(), {})
    await push(admin, await fixture({ ...assets(3, 'v1'), 'fed-mods.json': 'v1' }), { app, timestamp: 1000 })

    // The pushing client authenticates as its own user; deleting the user drops its connection and
    // refuses every reconnect, so not even the cleanup gets through: as if the process had died.
    await valkey.acl('SETUSER', app, 'on', '>pw', '~*', '&*', '+@all')
    const { host, port } = valkeyEnv().standalone
    const pusher = createValkeyStore(`valkey://${app}:pw@${host}:${port}`, {})
    const crash = push(
      pusher,
      await fixture({ ...assets(300, 'v2'), 'fed-mods.json': 'v2' }),
      { app, timestamp: 2000, concurrency: 4, retries: 0 },
      {
        onProgress: ({ done }) => done.files === 20 && void valkey.acl('DELUSER', app),
      },
    )
    await expect(crash).rejects.toMatchObject({ code: 'UPLOAD_FAILED' })
    await pusher.close()

    const written = (await appKeys(valkey, app)).filter((key) => key.startsWith(`data:${app}:2000:`))
    expect(written.length).toBeGreaterThanOrEqual(20)
    expect(written).not.toContain(`data:${app}:2000:fed-mods.json`)
    expect(await valkey.exists(`manifest:${app}:2000`)).toBe(0)
    const ttls = await Promise.all(written.map((key) => valkey.ttl(key)))
    expect(Math.min(...ttls)).toBeGreaterThan(0)
    expect(Math.max(...ttls)).toBeLessThanOrEqual(3600)
    expect(await valkey.ttl(`lock:${app}:2000`)).toBeGreaterThan(Math.max(...ttls))

    expect((await listBuilds(admin, app)).map((build) => build.timestamp)).toEqual([1000])
    const dest = join(await tempDir(), 'www')
    await pop({ store: admin, app, dest })
    await admin.close()
    expect(await readTree(dest)).toEqual({ ...assets(3, 'v1'), 'fed-mods.json': 'v1' })
  })

  it('fails the build with a clear error, without hanging, when the server dies mid-populate', async () => {
    const [port] = await freePorts(1)
    const server = await startRedis(await tempDir(), port!)
    const store = createValkeyStore(`valkey://127.0.0.1:${port}`, {})
    const started = Date.now()
    const error = await push(
      store,
      await fixture({ ...assets(300, 'v1'), 'fed-mods.json': 'v1' }),
      { app: uniqueApp(), timestamp: 1000, concurrency: 4 },
      {
        onProgress: ({ done }) => done.files === 20 && server.kill('SIGKILL'),
      },
    ).catch((e) => e)
    await store.close()
    expect(error).toMatchObject({ code: 'UPLOAD_FAILED' })
    // The retries find the server gone: refused.
    expect(error.message).toMatch(new RegExp(`(Lost the connection to|Cannot connect to) valkey://127.0.0.1:${port}: .*ECONNREFUSED`))
    expect(error.message).toContain('No entrypoint and no manifest of build 1000 were written')
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it('publishes the entrypoint after every other file, the manifest last, and makes keys permanent only then, the manifest last of all', async () => {
    const app = uniqueApp()
    const monitor = await rawClient().monitor()
    const seen: string[] = []
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[1]?.includes(`:${app}:`) && !args[1].startsWith('lease:')) seen.push(`${args[0]!.toUpperCase()} ${args[1].replace(`:${app}:1000`, '')}`)
    })
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture({ ...assets(30, 'v1'), 'fed-mods.json': 'v1' }), { app, timestamp: 1000 })
    await store.close()
    await sleep(100) // MONITOR lines trail the replies
    monitor.disconnect()

    const last = (prefix: string) => seen.findLastIndex((line) => line.startsWith(prefix))
    expect(seen[0]).toBe('SET lock')
    expect(seen.filter((line) => line.startsWith('SET data:js/'))).toHaveLength(30)
    expect(seen.indexOf('SET data:fed-mods.json')).toBeGreaterThan(last('SET data:js/'))
    expect(seen.indexOf('SET manifest')).toBeGreaterThan(seen.indexOf('SET data:fed-mods.json'))
    // Killed before the manifest is persisted, a push leaves keys that expire, none for ever (issue 16 case 6).
    expect(seen.findIndex((line) => line.startsWith('PERSIST'))).toBeGreaterThan(seen.indexOf('SET manifest'))
    expect(seen.filter((line) => line.startsWith('PERSIST data:'))).toHaveLength(31)
    expect(seen.slice(-2)).toEqual(['PERSIST manifest', 'UNLINK lock'])
  })
})
