import { mkdir, readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { entryOf, parseManifest } from '../../src/core/model/manifest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { tempDir, tree, writeTree } from '../helpers/fs'

const build = {
  'fed-mods.json': '{"inventory":{"entry":["/apps/inventory/main.1a2b3c4d.js"]}}',
  'main.1a2b3c4d.js': 'export {}',
  'nested/deep/logo café.svg': '<svg/>',
}

async function push(storeRoot: string, outDir: string, timestamp: number, extra = {}) {
  const store = createLocalStore(storeRoot)
  const options = resolveOptions({ app: 'inventory', timestamp, ...extra }, {})
  return populate({ store, options, files: await collectFiles(outDir) })
}

describe('the local store', () => {
  it('lands a build under data/<app>/ with its manifest', async () => {
    const storeRoot = await tempDir()
    const report = await push(storeRoot, await writeTree(await tempDir(), build), 1700000000)
    expect(report).toMatchObject({ uploaded: 3, entrypoints: ['fed-mods.json'], manifestKey: 'manifests/inventory/1700000000' })
    expect(await tree(storeRoot)).toEqual([
      'data/inventory/fed-mods.json',
      'data/inventory/main.1a2b3c4d.js',
      'data/inventory/nested/deep/logo café.svg',
      'manifests/inventory/1700000000',
    ])
    const manifest = parseManifest(await readFile(join(storeRoot, 'manifests/inventory/1700000000'), 'utf8'), 'manifest', 1700000000)
    expect(manifest).toMatchObject({
      files: ['fed-mods.json', 'main.1a2b3c4d.js', 'nested/deep/logo café.svg'],
      timestamp: 1700000000,
      entrypoints: ['fed-mods.json'],
    })
    expect(entryOf(manifest, 'main.1a2b3c4d.js')).toEqual({
      size: 9,
      contentType: 'text/javascript; charset=utf-8',
      cacheControl: 'public, max-age=31536000, immutable',
      md5: expect.stringMatching(/^[0-9a-f]{32}$/),
      etag: expect.any(String),
    })
  })

  it('records in the manifest only what it pushed, not what `exclude` left out', async () => {
    const storeRoot = await tempDir()
    const report = await push(storeRoot, await writeTree(await tempDir(), { ...build, 'main.1a2b3c4d.js.map': '{}' }), 1700000000, { exclude: '**/*.map' })
    expect(report).toMatchObject({ uploaded: 3, excluded: 1 })
    const manifest = JSON.parse(await readFile(join(storeRoot, 'manifests/inventory/1700000000'), 'utf8'))
    expect(manifest.files).toEqual(['fed-mods.json', 'main.1a2b3c4d.js', 'nested/deep/logo café.svg'])
  })

  it('writes no entrypoint and no manifest when an asset fails', async () => {
    const storeRoot = await tempDir()
    await mkdir(join(storeRoot, 'data/inventory/main.1a2b3c4d.js'), { recursive: true }) // a directory where the file must go
    const outDir = await writeTree(await tempDir(), build)
    await expect(push(storeRoot, outDir, 1700000000)).rejects.toMatchObject({
      code: 'UPLOAD_FAILED',
      message: expect.stringMatching(/main\.1a2b3c4d\.js.*push-cache-.*No entrypoint and no manifest/s),
    })
    expect(await tree(storeRoot)).toEqual(['data/inventory/nested/deep/logo café.svg'])
  })

  it('leaves in place the pending record an earlier attempt left at its timestamp when an asset fails', async () => {
    // The earlier attempt's entrypoint may be served: its record keeps that build's files from prunes.
    const storeRoot = await tempDir()
    const earlier = '{"timestamp":1700000000,"files":["fed-mods.json","main.0f0f0f0f.js"],"entrypoints":{"fed-mods.json":"00"}}'
    await writeTree(storeRoot, { 'locks/inventory/pending-1700000000': earlier })
    await mkdir(join(storeRoot, 'data/inventory/main.1a2b3c4d.js'), { recursive: true }) // a directory where the file must go
    await expect(push(storeRoot, await writeTree(await tempDir(), build), 1700000000)).rejects.toMatchObject({ code: 'UPLOAD_FAILED' })
    expect(await readFile(join(storeRoot, 'locks/inventory/pending-1700000000'), 'utf8')).toBe(earlier)
  })

  it('pops the current files into a directory, replacing what was there', async () => {
    const storeRoot = await tempDir()
    await push(storeRoot, await writeTree(await tempDir(), build), 1700000000)
    const dest = await writeTree(join(await tempDir(), 'www'), { 'stale.js': 'old' })
    const report = await pop({ store: createLocalStore(storeRoot), app: 'inventory', dest })
    expect(report.files).toBe(3)
    expect(await tree(dest)).toEqual(['fed-mods.json', 'main.1a2b3c4d.js', 'nested/deep/logo café.svg'])
    expect(await readdir(dirname(dest))).toEqual(['.www.builds', 'www']) // dest links to a build directory beside it
  })
})

describe('populate --image', () => {
  it('pushes, with a warning, when the newest manifest cannot be read', async () => {
    const storeRoot = await tempDir()
    await push(storeRoot, await writeTree(await tempDir(), build), 1700000000, { image: 'quay.io/app:1' })
    await writeTree(join(storeRoot, 'manifests/inventory'), { '1700000100': '{"files": 5}' })
    const warnings: string[] = []
    const store = createLocalStore(storeRoot)
    const options = resolveOptions({ app: 'inventory', timestamp: 1700000200, image: 'quay.io/app:2' }, {})
    const logger = { info() {}, debug() {}, error() {}, warn: (line: string) => void warnings.push(line) }
    const report = await populate({ store, options, files: await collectFiles(await writeTree(await tempDir(), build)), logger })
    expect(report.skipped).toBeUndefined()
    expect(report.manifestKey).toBe('manifests/inventory/1700000200')
    expect(warnings.join('\n')).toMatch(/manifests\/inventory\/1700000100 cannot be read.*The duplicate-image check is skipped: build 1700000200 is pushed\./s)
  })
})
