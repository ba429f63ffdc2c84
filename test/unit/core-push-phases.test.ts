import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { entryOf, serializeManifest } from '../../src/core/model/manifest'
import type { ProgressEvent } from '../../src/core/model/progress'
import { buildManifest, withManifestBody } from '../../src/core/push/build-manifest'
import { collectFiles } from '../../src/core/push/collect-files'
import { planUpload } from '../../src/core/push/plan'
import { type HashedUpload, planPhase } from '../../src/core/push/plan-against-store'
import { emptyReport } from '../../src/core/push/report'
import { createPushRun } from '../../src/core/push/run'
import { createFileWriter } from '../../src/core/push/write-files'
import { buildWriteFor } from '../../src/core/store/build-write'
import { flatLayout, layoutOf } from '../../src/core/store/layout'
import type { Store } from '../../src/core/store/store'
import { silentLogger } from '../../src/core/util/logger'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { tempDir, tree, writeTree } from '../helpers/fs'

const build = { 'fed-mods.json': '{}', 'main.1a2b3c4d.js': 'export {}', 'big.bin': 'x'.repeat(4096) }

/** One push's shared state over a fresh local store and a build on disk, as populate sets it up. */
async function setUp(timestamp: number, storeRoot?: string) {
  const root = storeRoot ?? (await tempDir())
  const store = createLocalStore(root)
  const options = resolveOptions({ app: 'inventory', timestamp }, {})
  const plan = planUpload(await collectFiles(await writeTree(await tempDir(), build)), options, layoutOf(store))
  const report = emptyReport(options, store.display, flatLayout.manifestKey('inventory', timestamp), plan)
  const run = createPushRun(store, options, silentLogger, Date.now, report)
  const write = buildWriteFor({ store, app: 'inventory', timestamp, retries: 0, dryRun: false, retry: run.retry, now: Date.now })
  return { root, store, options, plan, report, run, write, files: [...plan.assets, ...plan.entrypoints] as HashedUpload[] }
}

describe('the plan phase', () => {
  it('takes every file as new on an empty store, and as changed once the store holds its name but no manifest vouches for the bytes', async () => {
    const first = await setUp(100)
    const planned = await planPhase(first.run, first.files, undefined, first.write.comparesHeaders)
    expect(planned.sync.added.map((file) => file.relpath).sort()).toEqual(['big.bin', 'fed-mods.json', 'main.1a2b3c4d.js'])
    expect(first.report.phases.plan).toBeGreaterThanOrEqual(0)

    const writer = createFileWriter(first.run, first.write, { files: 3, bytes: 0 })
    for (const file of planned.sync.added) await writer.put(file)
    const second = await setUp(200, first.root)
    const again = await planPhase(second.run, second.files, undefined, second.write.comparesHeaders)
    expect(again.sync).toMatchObject({ added: [], unchanged: [] })
    expect(again.sync.changed).toHaveLength(3)
  })

  it('says what it could not read, and that nothing was written', async () => {
    const { run, files } = await setUp(100)
    const broken: Store = { ...run.store, list: () => ({ [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new Error('disk gone')) }) }) }
    await expect(planPhase({ ...run, store: broken }, files, undefined, true)).rejects.toThrow(
      /Could not learn what .* holds for inventory: disk gone\. Nothing of build 100 was written\./,
    )
  })
})

describe('the file writer', () => {
  it('writes a batch largest first, keeps the store tags and reports progress per file', async () => {
    const { root, run, write, files, report } = await setUp(100)
    const events: ProgressEvent[] = []
    const writer = createFileWriter(run, write, { files: 2, bytes: 0 }, (event) => events.push(event))
    await writer.putAll(
      'added',
      files.filter((file) => !file.entrypoint),
    )
    expect(writer.written.map((file) => file.relpath)).toEqual(['big.bin', 'main.1a2b3c4d.js'])
    expect(writer.written.filter((file) => file.etag !== undefined).map((file) => file.relpath)).toEqual(['big.bin', 'main.1a2b3c4d.js'])
    expect(events.map((event) => event.done.files)).toEqual([1, 2])
    expect(report.phases.added).toBeGreaterThanOrEqual(0)
    expect(await tree(root)).toEqual(['data/inventory/big.bin', 'data/inventory/main.1a2b3c4d.js'])
  })

  it('names the file, the key and the build when a write fails', async () => {
    const { run, write, files } = await setUp(100)
    const failing: Store = { ...run.store, put: () => Promise.reject(new Error('disk full')) }
    const writer = createFileWriter({ ...run, store: failing }, write, { files: 1, bytes: 0 })
    await expect(writer.put(files[0]!)).rejects.toMatchObject({
      code: 'UPLOAD_FAILED',
      message: expect.stringMatching(/Could not push .* \(key data\/inventory\/.*\): disk full\. No entrypoint and no manifest of build 100 were written\./),
    })
  })
})

describe('the flat build write', () => {
  it('finds a build superseded once a newer manifest is in the store', async () => {
    const older = await setUp(100)
    expect(await older.write.superseded()).toBe(false)
    await older.store.put(flatLayout.manifestKey('inventory', 200), Buffer.from('{}'))
    expect(await older.write.superseded()).toBe(true)
  })
})

describe('buildManifest', () => {
  const file = (relpath: string): HashedUpload => ({
    relpath,
    path: `/out/${relpath}`,
    size: 3,
    key: `data/app/${relpath}`,
    contentType: 'text/javascript',
    cacheControl: 'public, max-age=86400',
    entrypoint: relpath === 'fed-mods.json',
    md5: 'd41d8cd98f00b204e9800998ecf8427e',
  })
  // As the plan leaves an unchanged file: with the tag and the build of the key that holds its bytes.
  const kept = { ...file('kept.js'), etag: 'old-tag', version: 100 }
  const [fresh, entry] = [
    { ...file('fresh.js'), etag: 'new-tag' },
    { ...file('fed-mods.json'), etag: 'entry-tag' },
  ]
  const input = { timestamp: 200, files: [kept, fresh, entry], entrypoints: ['fed-mods.json'] }

  it('records every file, sorted, with the tag the store gave it or held for it (flat)', () => {
    const manifest = buildManifest({ ...input, recordOf: ({ etag }) => ({ etag }) })
    expect(manifest).toMatchObject({ files: ['fed-mods.json', 'fresh.js', 'kept.js'], timestamp: 200, entrypoints: ['fed-mods.json'] })
    expect(entryOf(manifest, 'kept.js')).toMatchObject({ etag: 'old-tag', size: 3, md5: 'd41d8cd98f00b204e9800998ecf8427e' })
    expect(entryOf(manifest, 'fresh.js')).toMatchObject({ etag: 'new-tag' })
    expect(manifest).not.toHaveProperty('image')
  })

  it('records the older build whose key holds an unchanged file (versioned)', () => {
    const manifest = buildManifest({
      ...input,
      image: 'quay.io/app:1',
      recordOf: ({ version }) => (version !== undefined ? { version } : {}),
    })
    expect(entryOf(manifest, 'kept.js')).toMatchObject({ version: 100 })
    expect(entryOf(manifest, 'fresh.js')).not.toHaveProperty('version')
    expect(manifest.image).toBe('quay.io/app:1')
  })
})

describe('the manifest body', () => {
  const manifestOf = (count: number) =>
    buildManifest({
      timestamp: 200,
      files: Array.from({ length: count }, (_, index) => ({
        relpath: `js/${'é'.repeat(index % 3)}chunk-${index}.js`,
        path: `/out/js/chunk-${index}.js`,
        size: index,
        key: `data/app/js/chunk-${index}.js`,
        contentType: 'text/javascript',
        cacheControl: 'public, max-age=86400',
        entrypoint: false,
        md5: index.toString(16).padStart(32, '0'),
        etag: `tag-${index}`,
      })),
      entrypoints: [],
      recordOf: ({ etag }) => ({ etag }),
    })

  it('is the bytes of a small manifest', async () => {
    const manifest = manifestOf(10)
    const body = await withManifestBody(manifest, async (body) => body)
    expect(Buffer.from(body as Uint8Array).toString()).toBe(`${JSON.stringify(manifest)}\n`)
  })

  it('is a temporary file of a large manifest, byte for byte, removed once put', async () => {
    const manifest = manifestOf(30_000)
    const expected = serializeManifest(manifest)
    let put: { file: string; size: number } | undefined
    await withManifestBody(manifest, async (body) => {
      expect('file' in body).toBe(true)
      put = body as { file: string; size: number }
      expect(put.size).toBe(expected.byteLength)
      expect((await readFile(put.file)).equals(expected)).toBe(true)
    })
    expect(existsSync(put!.file)).toBe(false)
  })

  it('is the bytes in memory of a large manifest where no temporary file can be written', async () => {
    const manifest = manifestOf(30_000)
    const tmp = process.env.TMPDIR
    process.env.TMPDIR = '/nonexistent/push-cache-tmp'
    try {
      const body = await withManifestBody(manifest, async (body) => body)
      expect(Buffer.from(body as Uint8Array).equals(serializeManifest(manifest))).toBe(true)
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR
      else process.env.TMPDIR = tmp
    }
  })
})

describe('the versioned build write', () => {
  /** A local directory that declares the versioned layout: the lock and data keys land as files. */
  async function versionedStore() {
    const root = await tempDir()
    const persisted: string[][] = []
    const store: Store = {
      ...createLocalStore(root),
      layout: 'versioned',
      pendingExpiry: { seconds: 60, option: 'valkey.lockTtl' },
      persist: async (keys) => {
        persisted.push([...keys])
        return keys.filter((key) => key.includes('gone'))
      },
    }
    return { root, store, persisted }
  }
  const writeFor = (store: Store, now: () => number, dryRun = false) =>
    buildWriteFor({ store, app: 'inventory', timestamp: 100, retries: 0, dryRun, retry: (_what, attempt) => attempt(), now })

  it('holds a lock while the build is written, persists its keys and drops the lock once complete', async () => {
    const { root, store, persisted } = await versionedStore()
    const write = writeFor(store, Date.now)
    expect(write).toMatchObject({ expiresIn: 60, comparesHeaders: false })
    await write.begin(true)
    expect(await tree(root)).toEqual(['lock:inventory:100'])
    await write.persist([{ key: 'data:inventory:100:a.js' }], 'persisting')
    expect(persisted).toEqual([['data:inventory:100:a.js']])
    expect(await write.superseded()).toBe(false)
    await write.complete(silentLogger, async () => {})
    expect(await tree(root)).toEqual([])
  })

  it('writes a build of no file but its manifest without a lock, the manifest permanent at once', async () => {
    const { root, store, persisted } = await versionedStore()
    const write = writeFor(store, Date.now)
    await write.begin(false)
    expect(write.expiresIn).toBeUndefined()
    await write.persist([{ key: 'manifest:inventory:100' }], 'persisting the manifest')
    await write.complete(silentLogger, async () => {})
    expect(await tree(root)).toEqual([])
    expect(persisted).toEqual([])
  })

  it('fails a build that outlived its keys, naming the option that raises the limit', async () => {
    const { store } = await versionedStore()
    let clock = 0
    const write = writeFor(store, () => clock)
    write.checkTime()
    clock = 61_000
    expect(() => write.checkTime()).toThrow('Build 100 took longer than `valkey.lockTtl` (60 s) to write; it was abandoned.')
    await expect(write.persist([{ key: 'data:inventory:100:gone.js' }], 'persisting')).rejects.toThrow(
      '1 keys of build 100 expired before the build completed (first: data:inventory:100:gone.js). Raise `valkey.lockTtl` above the time a push takes.',
    )
  })

  it('takes back what a failed build wrote, and writes nothing in a dry run', async () => {
    const { root, store } = await versionedStore()
    const write = writeFor(store, Date.now)
    await write.begin(true)
    await store.put('data:inventory:100:a.js', Buffer.from('a'))
    await write.abandon([{ key: 'data:inventory:100:a.js' }], silentLogger)
    expect(await tree(root)).toEqual([])
    await writeFor(store, Date.now, true).begin(true)
    expect(await tree(root)).toEqual([])
  })

  it('records where an unchanged file lives, and nothing for one written now', () => {
    const write = buildWriteFor({
      store: { ...createLocalStore('/nowhere'), layout: 'versioned' },
      app: 'inventory',
      timestamp: 100,
      retries: 0,
      dryRun: false,
      retry: (_what, attempt) => attempt(),
      now: Date.now,
    })
    expect(write.recordOf({ etag: 'tag', version: 90 })).toEqual({ version: 90 })
    expect(write.recordOf({ etag: 'tag' })).toEqual({})
  })
})
