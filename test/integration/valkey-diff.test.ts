import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { entryOf, parseManifest } from '../../src/core/model/manifest'
import { prune } from '../../src/core/prune/prune'
import { pop } from '../../src/core/serve/pop'
import { createValkeyStore } from '../../src/stores/valkey'
import { appKeys, fixture, push, rawClient, readTree, tempDir, uniqueApp, valkeyUrl } from '../helpers/valkey'

const valkey = rawClient()
const build1 = { 'fed-mods.json': 'v1', 'js/vendor.11111111.js': 'vendor', 'js/main.22222222.js': 'main v1', 'index.html': 'v1' }
const build2 = { 'fed-mods.json': 'v2', 'js/vendor.11111111.js': 'vendor', 'js/main.33333333.js': 'main v2', 'index.html': 'v1' }

describe('Valkey: a push writes only files whose content the newest build does not hold', () => {
  it('writes no data key for a build pushed again, and pops it from the keys the older build wrote', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(build1), { app, timestamp: 1000 })
    const report = await push(store, await fixture(build1), { app, timestamp: 2000 })
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    await store.close()

    expect(report).toMatchObject({ uploaded: 0, unchanged: 4 })
    expect((await appKeys(valkey, app)).filter((key) => key.startsWith(`data:${app}:2000:`))).toEqual([])
    const manifest = parseManifest((await valkey.get(`manifest:${app}:2000`))!, 'manifest', 2000)
    expect(manifest.files).toEqual(Object.keys(build1).sort())
    expect(entryOf(manifest, 'index.html')).toMatchObject({ version: 1000, cacheControl: expect.any(String) })
    expect(await readTree(dest)).toEqual(build1)
  })

  it('writes the changed files under the new build and pops the rebuild whole', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(build1), { app, timestamp: 1000 })
    const report = await push(store, await fixture(build2), { app, timestamp: 2000 })
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    await store.close()

    expect(report).toMatchObject({ uploaded: 2, unchanged: 2 })
    expect((await appKeys(valkey, app)).filter((key) => key.startsWith(`data:${app}:2000:`))).toEqual([
      `data:${app}:2000:fed-mods.json`,
      `data:${app}:2000:js/main.33333333.js`,
    ])
    expect(await readTree(dest)).toEqual({ ...build2, 'js/main.22222222.js': 'main v1' })
  })

  it('writes again a key deleted behind its back', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(build1), { app, timestamp: 1000 })
    await valkey.del(`data:${app}:1000:index.html`)
    const report = await push(store, await fixture(build1), { app, timestamp: 2000 })
    await store.close()

    expect(report).toMatchObject({ uploaded: 1, unchanged: 3 })
    expect(await valkey.get(`data:${app}:2000:index.html`)).toBe('v1')
  })

  it('prunes an aged build but keeps the keys a surviving build found unchanged in it', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(build1), { app, timestamp: 1000 })
    await push(store, await fixture(build2), { app, timestamp: 2000 })
    const report = await prune({ store, app, rule: { now: 10_000, olderThanSeconds: 60, keep: 1 }, entrypoints: ['fed-mods.json'] })
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    await store.close()

    expect(report.builds).toEqual([1000])
    expect(await appKeys(valkey, app)).toEqual([
      `data:${app}:1000:index.html`,
      `data:${app}:1000:js/vendor.11111111.js`,
      `data:${app}:2000:fed-mods.json`,
      `data:${app}:2000:js/main.33333333.js`,
      `manifest:${app}:2000`,
    ])
    expect(await readTree(dest)).toEqual(build2)
  })
})
