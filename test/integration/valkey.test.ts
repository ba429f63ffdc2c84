import { join } from 'node:path'
import { Redis } from 'iovalkey'
import { build } from 'vite'
import { describe, expect, it } from 'vitest'
import { fixtureConfig } from '../../fixtures/app/vite.config'
import { entryOf, parseManifest } from '../../src/core/model/manifest'
import { prune } from '../../src/core/prune/prune'
import { collectFiles } from '../../src/core/push/collect-files'
import { pop } from '../../src/core/serve/pop'
import { listBuilds } from '../../src/core/store/builds'
import { createValkeyStore } from '../../src/stores/valkey'
import { parseValkeyUrl } from '../../src/stores/valkey-client'
import pushCache from '../../src/vite'
import { appKeys, fixture, push, rawClient, readTree, tempDir, uniqueApp, valkeyEnv, valkeyUrl } from '../helpers/valkey'
import { freePorts, startRedis } from '../setup/valkey-server'

const valkey = rawClient()
const build1 = {
  'fed-mods.json': '{"app":{"entry":["/apps/app/js/main.1a2b3c4d.js"]}}',
  'js/main.1a2b3c4d.js': 'export {}',
  'assets/a:b.css': 'a{}',
  'nested/logo café.svg': '<svg/>',
}

describe('the Valkey store', () => {
  it("lands a build as valpop's keys, raw bytes, no expiry, plus a manifest with the headers", async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(build1), { app, timestamp: 1700000000 })
    await store.close()

    expect(await appKeys(valkey, app)).toEqual([
      `data:${app}:1700000000:assets/a:b.css`,
      `data:${app}:1700000000:fed-mods.json`,
      `data:${app}:1700000000:js/main.1a2b3c4d.js`,
      `data:${app}:1700000000:nested/logo café.svg`,
      `manifest:${app}:1700000000`,
    ])
    for (const [relpath, content] of Object.entries(build1)) {
      expect((await valkey.getBuffer(`data:${app}:1700000000:${relpath}`))?.toString()).toBe(content)
      expect(await valkey.ttl(`data:${app}:1700000000:${relpath}`)).toBe(-1)
    }
    const manifest = parseManifest((await valkey.get(`manifest:${app}:1700000000`))!, 'manifest', 1700000000)
    expect(manifest.files).toEqual(Object.keys(build1).sort())
    expect(entryOf(manifest, 'js/main.1a2b3c4d.js')).toEqual({
      size: 9,
      contentType: 'text/javascript; charset=utf-8',
      cacheControl: 'public, max-age=31536000, immutable',
      md5: expect.stringMatching(/^[0-9a-f]{32}$/),
    })
    expect(entryOf(manifest, 'fed-mods.json')?.cacheControl).toBe('public, max-age=60, stale-while-revalidate=300')
  })

  it('pops the build back byte for byte, a relpath with `:` included', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(build1), { app, timestamp: 1700000000 })
    const dest = join(await tempDir(), 'www')
    const report = await pop({ store, app, dest })
    await store.close()
    expect(report).toMatchObject({ files: 4, timestamp: 1700000000 })
    expect(await readTree(dest)).toEqual(build1)
  })

  it('never lets an older build pushed later win, and keeps files only the older build has', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture({ 'fed-mods.json': 'new', 'main.js': 'new' }), { app, timestamp: 2000 })
    await push(store, await fixture({ 'fed-mods.json': 'old', 'main.js': 'old', 'only-old.js': 'old' }), { app, timestamp: 1000 })
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    await store.close()
    expect(await readTree(dest)).toEqual({ 'fed-mods.json': 'new', 'main.js': 'new', 'only-old.js': 'old' })
  })

  it('prunes every key only dying builds name, with their manifests, so an app does not grow for ever', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture({ 'fed-mods.json': 'v1', 'legacy.js': 'v1' }), { app, timestamp: 1000 })
    await push(store, await fixture({ 'fed-mods.json': 'v2', 'main.js': 'v2' }), { app, timestamp: 2000 })
    await push(store, await fixture({ 'fed-mods.json': 'v3', 'main.js': 'v3' }), { app, timestamp: 3000 })
    const report = await prune({ store, app, rule: { now: 10_000, olderThanSeconds: 60, keep: 1 }, entrypoints: ['fed-mods.json'] })

    expect(report.builds).toEqual([2000, 1000])
    expect(await appKeys(valkey, app)).toEqual([`data:${app}:3000:fed-mods.json`, `data:${app}:3000:main.js`, `manifest:${app}:3000`])
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    await store.close()
    expect(await readTree(dest)).toEqual({ 'fed-mods.json': 'v3', 'main.js': 'v3' })
  })

  it('writes to the database the URL names', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(3), {})
    await push(store, await fixture({ 'a.js': 'a' }), { app, timestamp: 1 })
    await store.close()
    const db3 = rawClient()
    await db3.select(3)
    expect(await db3.get(`data:${app}:1:a.js`)).toBe('a')
    expect(await valkey.exists(`data:${app}:1:a.js`)).toBe(0)
  })

  it('refuses a value above the server limit with the size and the limit, before sending it', async () => {
    // A server of its own: the limit is server-wide, and other files' tests write large values to the suite's server meanwhile.
    const [port] = (await freePorts(1)) as [number]
    const server = await startRedis(await tempDir(), port, [], ['--proto-max-bulk-len', String(1024 * 1024)])
    const own = new Redis({ host: '127.0.0.1', port })
    try {
      const app = uniqueApp()
      const store = createValkeyStore(`redis://127.0.0.1:${port}`, {})
      const error = await push(store, await fixture({ 'big.bin': Buffer.alloc(1024 * 1024 + 1), 'fed-mods.json': '{}' }), { app, timestamp: 1 }).catch((e) => e)
      await store.close()
      expect(error).toMatchObject({ code: 'UPLOAD_FAILED' })
      expect(error.message).toContain('is 1048577 bytes, above the 1048576 bytes the server accepts in one value (proto-max-bulk-len)')
      expect(await appKeys(own, app)).toEqual([])
    } finally {
      own.disconnect()
      server.kill()
    }
  })
})

describe('connecting', () => {
  it('takes the user and password from the URL, and never shows the password', async () => {
    const app = uniqueApp()
    await valkey.acl('SETUSER', app, 'on', '>s3cr@t:pw', '~*', '&*', '+@all')
    const { host, port } = valkeyEnv().standalone
    const store = createValkeyStore(`valkey://${app}:${encodeURIComponent('s3cr@t:pw')}@${host}:${port}`, {})
    expect(store.display).toBe(`valkey://${host}:${port}`)
    await push(store, await fixture({ 'a.js': 'a' }), { app, timestamp: 1 })
    await store.close()
    expect(await valkey.get(`data:${app}:1:a.js`)).toBe('a')

    const wrong = createValkeyStore(`redis://${app}:not-the-s3cr@t@${host}:${port}`, {})
    const error = await push(wrong, await fixture({ 'a.js': 'a' }), { app, timestamp: 2 }).catch((e) => e)
    await wrong.close()
    expect(error.code).toMatch(/STORE_UNREACHABLE|UPLOAD_FAILED/)
    expect(error.message).toMatch(/WRONGPASS/)
    expect(`${error.message} ${error.cause?.message}`).not.toContain('s3cr@t')
    await valkey.acl('DELUSER', app)
  })

  it('takes credentials from options over the URL, and from the environment last', () => {
    const env = { PUSH_CACHE_VALKEY_USERNAME: 'env-user', PUSH_CACHE_VALKEY_PASSWORD: 'env-pw' }
    expect(parseValkeyUrl('valkey://u:p@h:1', { password: 'opt' }, env)).toMatchObject({ username: 'u', password: 'opt' })
    expect(parseValkeyUrl('redis://h', {}, env).tls).toBe(false)
    expect(parseValkeyUrl('valkeys://h', {}, env)).toMatchObject({ username: 'env-user', password: 'env-pw', tls: true, nodes: [{ host: 'h', port: 6379 }] })
    expect(parseValkeyUrl('rediss+cluster://:pw@a:7000,[::1]:7001', {}, {})).toMatchObject({
      cluster: true,
      tls: true,
      password: 'pw',
      display: 'rediss+cluster://a:7000,[::1]:7001',
    })
    expect(parseValkeyUrl('redis://h:1', { cluster: ['a:1', 'b:2'] }, {}).display).toBe('redis+cluster://a:1,b:2')
    expect(() => parseValkeyUrl('valkey+cluster://:secret@a:1/2', {}, {})).toThrow(/only database 0/)
    expect(() => parseValkeyUrl('valkey://:secret@', {}, {})).toThrow(/not a Valkey URL \(valkey:\/\/\*\*\*@\)/)
  })

  it('fails fast with a clear error when nothing listens, and closes without hanging', async () => {
    const started = Date.now()
    const store = createValkeyStore('valkey://127.0.0.1:1', {})
    const error = await push(store, await fixture({ 'a.js': 'a' }), { app: uniqueApp(), timestamp: 1 }).catch((e) => e)
    await store.close()
    expect(error.message).toMatch(/Cannot connect to valkey:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/)
    expect(Date.now() - started).toBeLessThan(5000)
  })
})

it('a real Vite build of the fixture lands in Valkey', async () => {
  const app = uniqueApp()
  const config = fixtureConfig([pushCache({ app, store: valkeyUrl(), timestamp: 1700000123 })])
  const outDir = await tempDir()
  await build({ configFile: false, ...config, build: { ...config.build, outDir } })
  const files = (await collectFiles(outDir)).map((file) => file.relpath)
  expect(files).toContain('fed-mods.json')
  expect(await appKeys(valkey, app)).toEqual([...files.map((relpath) => `data:${app}:1700000123:${relpath}`), `manifest:${app}:1700000123`].sort())
  const store = createValkeyStore(valkeyUrl(), {})
  expect((await listBuilds(store, app)).map((b) => [b.timestamp, b.complete])).toEqual([[1700000123, true]])
  await store.close()
})
