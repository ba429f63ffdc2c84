import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { prune } from '../../src/core/prune/prune'
import { pop } from '../../src/core/serve/pop'
import { listKeys } from '../../src/core/store/builds'
import { createValkeyStore } from '../../src/stores/valkey'
import { appKeys, assets, clusterUrl, fixture, push, rawCluster, readTree, tempDir, uniqueApp } from '../helpers/valkey'

const cluster = rawCluster()

describe('a 3-master cluster', () => {
  it('takes a build whose keys spread over every master: populate, list, pop, prune', async () => {
    const app = uniqueApp()
    const store = createValkeyStore(clusterUrl(), {})
    await push(store, await fixture({ ...assets(60, 'v1'), 'only-v1.js': 'v1', 'fed-mods.json': 'v1' }), { app, timestamp: 1000 })
    await push(store, await fixture({ ...assets(60, 'v2'), 'fed-mods.json': 'v2' }), { app, timestamp: 2000 })

    await cluster.ping()
    const masters = cluster.nodes('master')
    expect(masters).toHaveLength(3)
    for (const master of masters) expect((await master.keys(`data:${app}:*`)).length).toBeGreaterThan(0)
    const listed = await listKeys(store, `data:${app}:`)
    expect(listed).toHaveLength(62 + 61)
    expect(listed.sort()).toEqual((await appKeys(cluster, app)).filter((key) => key.startsWith('data:')))

    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest })
    expect(await readTree(dest)).toEqual({ ...assets(60, 'v2'), 'only-v1.js': 'v1', 'fed-mods.json': 'v2' })

    const report = await prune({ store, app, rule: { now: 10_000, olderThanSeconds: 60, keep: 1 }, entrypoints: ['fed-mods.json'] })
    await store.close()
    expect(report.keys).toHaveLength(62)
    expect(await appKeys(cluster, app)).toEqual(
      [...Object.keys({ ...assets(60, 'v2'), 'fed-mods.json': '' }).map((relpath) => `data:${app}:2000:${relpath}`), `manifest:${app}:2000`].sort(),
    )
  })

  it('fails fast with a clear error when no seed node answers', async () => {
    const started = Date.now()
    const store = createValkeyStore('valkey+cluster://127.0.0.1:1,127.0.0.1:2', {})
    const error = await push(store, await fixture({ 'a.js': 'a' }), { app: uniqueApp(), timestamp: 1 }).catch((e) => e)
    await store.close()
    expect(error.message).toMatch(/Cannot connect to valkey\+cluster:\/\/127\.0\.0\.1:1,127\.0\.0\.1:2: /)
    expect(Date.now() - started).toBeLessThan(5000)
  })
})
