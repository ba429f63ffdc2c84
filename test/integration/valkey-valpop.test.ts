import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { prune } from '../../src/core/prune/prune'
import { collectFiles } from '../../src/core/push/collect-files'
import { pop } from '../../src/core/serve/pop'
import { listBuilds } from '../../src/core/store/builds'
import { createValkeyStore } from '../../src/stores/valkey'
import type { ValkeyOptions } from '../../src/stores/valkey-options'
import { appKeys, fixture, push, rawClient, readTree, tempDir, uniqueApp, valkeyUrl } from '../helpers/valkey'

const valkey = rawClient()

/** valpop's populate, as its Go code does it: a lock, `fmt.Sprintf("data:%s:%d:%s", app, ts, path)` = the raw bytes, unlock. */
async function valpopPopulate(app: string, timestamp: number, files: Record<string, string | Uint8Array>, { unlock = true } = {}) {
  const source = await fixture(files)
  await valkey.set(`lock:${app}:${timestamp}`, 'in-progress')
  for (const file of await collectFiles(source)) await valkey.set(`data:${app}:${timestamp}:${file.relpath}`, await readFile(file.path))
  if (unlock) await valkey.del(`lock:${app}:${timestamp}`)
}

async function popTree(app: string, options: ValkeyOptions = {}): Promise<Record<string, string>> {
  const store = createValkeyStore(valkeyUrl(), options)
  const dest = join(await tempDir(), 'www')
  try {
    await pop({ store, app, dest })
    return await readTree(dest)
  } finally {
    await store.close()
  }
}

describe('valpop compatibility', () => {
  it('writes the keys valpop writes, byte for byte', async () => {
    const files = { 'fed-mods.json': '{}', 'js/main.1a2b3c4d.js': 'export {}', 'odd:name/ü n.bin': randomBytes(256) }
    const [ours, theirs] = [uniqueApp(), uniqueApp()]
    const store = createValkeyStore(valkeyUrl(), {})
    await push(store, await fixture(files), { app: ours, timestamp: 1700000000 })
    await store.close()
    await valpopPopulate(theirs, 1700000000, files)

    const theirKeys = await appKeys(valkey, theirs)
    expect((await appKeys(valkey, ours)).filter((key) => key.startsWith('data:'))).toEqual(theirKeys.map((key) => key.replace(theirs, ours)))
    for (const key of theirKeys) expect(await valkey.getBuffer(key.replace(theirs, ours))).toEqual(await valkey.getBuffer(key))
  })

  it('pops data valpop wrote without manifests, the newest version of each file', async () => {
    const app = uniqueApp()
    await valpopPopulate(app, 1000, { 'fed-mods.json': 'v1', 'a.js': 'v1', 'chunk:1.js': 'v1' })
    await valpopPopulate(app, 2000, { 'fed-mods.json': 'v2', 'b.js': 'v2' })
    await valpopPopulate(app, 1500, { 'fed-mods.json': 'late but older', 'a.js': 'late but older' })

    const store = createValkeyStore(valkeyUrl(), {})
    expect((await listBuilds(store, app)).map((build) => [build.timestamp, build.manifestKey, build.complete])).toEqual([
      [2000, undefined, true],
      [1500, undefined, true],
      [1000, undefined, true],
    ])
    await store.close()
    expect(await popTree(app)).toEqual({ 'fed-mods.json': 'v2', 'a.js': 'late but older', 'b.js': 'v2', 'chunk:1.js': 'v1' })
  })

  it('prunes data valpop wrote without manifests, keeping the newest version of every relpath', async () => {
    const app = uniqueApp()
    await valpopPopulate(app, 1000, { 'fed-mods.json': 'v1', 'legacy.js': 'v1' })
    await valpopPopulate(app, 2000, { 'fed-mods.json': 'v2', 'main.js': 'v2' })
    await valpopPopulate(app, 3000, { 'fed-mods.json': 'v3', 'main.js': 'v3' })
    const store = createValkeyStore(valkeyUrl(), {})
    const report = await prune({ store, app, rule: { now: 10_000, olderThanSeconds: 60, keep: 1 }, entrypoints: ['fed-mods.json'] })
    await store.close()
    expect(report.builds).toEqual([2000])
    expect(await appKeys(valkey, app)).toEqual([`data:${app}:1000:legacy.js`, `data:${app}:3000:fed-mods.json`, `data:${app}:3000:main.js`])
    expect(await popTree(app)).toEqual({ 'fed-mods.json': 'v3', 'main.js': 'v3', 'legacy.js': 'v1' })
  })

  // valpop still pushing into the app after push-cache did: its keys are found by `scan: 'always'` only.
  it('skips a build whose lock is present, whoever wrote it', async () => {
    const app = uniqueApp()
    const always = { scan: 'always' } as const
    const store = createValkeyStore(valkeyUrl(), always)
    await push(store, await fixture({ 'fed-mods.json': 'done', 'main.js': 'done' }), { app, timestamp: 1000 })
    await valpopPopulate(app, 2000, { 'fed-mods.json': 'half', 'main.js': 'half' }, { unlock: false })
    await valkey.set(`manifest:${app}:2000`, JSON.stringify({ files: ['fed-mods.json', 'main.js'], timestamp: 2000 }))

    expect((await listBuilds(store, app)).map((build) => [build.timestamp, build.complete])).toEqual([
      [2000, false],
      [1000, true],
    ])
    expect(await popTree(app, always)).toEqual({ 'fed-mods.json': 'done', 'main.js': 'done' })
    await valkey.del(`lock:${app}:2000`)
    expect(await popTree(app, always)).toEqual({ 'fed-mods.json': 'half', 'main.js': 'half' })
    await store.close()
  })

  it("adopts valpop's builds once: what valpop writes after that needs `scan: 'always'`", async () => {
    const app = uniqueApp()
    await valpopPopulate(app, 1000, { 'fed-mods.json': 'v1', 'a.js': 'v1' })
    expect(await popTree(app)).toEqual({ 'fed-mods.json': 'v1', 'a.js': 'v1' })
    await valpopPopulate(app, 2000, { 'fed-mods.json': 'v2' })
    expect(await popTree(app)).toEqual({ 'fed-mods.json': 'v1', 'a.js': 'v1' })
    expect(await popTree(app, { scan: 'always' })).toEqual({ 'fed-mods.json': 'v2', 'a.js': 'v1' })
    // `never` reads the index alone: an app nobody adopted has no build there.
    const fresh = uniqueApp()
    await valpopPopulate(fresh, 1000, { 'fed-mods.json': 'v1' })
    await expect(popTree(fresh, { scan: 'never' })).rejects.toThrow(`No files of app ${fresh}`)
  })

  it.each([['../escape.txt'], ['/tmp/absolute.txt'], ['nul\0byte.txt'], ['back\\slash.txt']])(
    'refuses to pop a planted key with the relpath %j, writing nothing',
    async (relpath) => {
      const app = uniqueApp()
      await valpopPopulate(app, 1000, { 'fed-mods.json': '{}' })
      await valkey.set(`data:${app}:1000:${relpath}`, 'planted')
      const store = createValkeyStore(valkeyUrl(), {})
      const parent = await tempDir()
      const error = await pop({ store, app, dest: join(parent, 'www') }).catch((e) => e)
      await store.close()
      expect(error.code).toBe('UNSAFE_PATH')
      expect(await readdir(parent)).toEqual([])
      expect(await readdir(dirname(parent))).not.toContain('escape.txt')
    },
  )
})
