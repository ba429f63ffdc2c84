import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { prune } from '../../src/core/prune/prune'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import type { Store } from '../../src/core/store/store'
import { type Options, resolveOptions } from '../../src/options'
import { createS3Store } from '../../src/stores/s3'
import { writeTree } from '../helpers/fs'
import { clearFaults, createBucket, getObject, injectFault, listObjects, putObject, requestLog, s3StoreOptions, s3StoreUrl } from '../helpers/s3'

const APP = 'inventory'
const TIMESTAMP = 1_700_000_000
const SHORT = 'public, max-age=60, stale-while-revalidate=300'
const IMMUTABLE = 'public, max-age=31536000, immutable'
const DEFAULT = 'public, max-age=86400'
const RULED = 'public, max-age=600'
const DAY = 86_400

/** A small ConsoleDot-like build: entrypoint, short-cached files, hashed chunks, a path with a space. */
const BUILD: Record<string, string> = {
  'fed-mods.json': '{"inventory":{"entry":["/apps/inventory/js/main.3f2a9c1b.js"]}}',
  'index.html': '<!doctype html><script src="js/main.3f2a9c1b.js"></script>',
  'app-info.json': '{"version":"1.0.0"}',
  'js/main.3f2a9c1b.js': 'console.log("main")',
  'js/vendor.8f7e6d5c.js': 'console.log("vendor")',
  'css/style.css': 'body{margin:0}',
  'images/logo.svg': '<svg xmlns="http://www.w3.org/2000/svg"/>',
  'dir with space/ünïcødé.txt': 'ü',
}

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'push-cache-s3-populate-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

async function writeBuild(files: Record<string, string | Buffer>): Promise<string> {
  return writeTree(await mkdtemp(join(root, 'dist-')), files)
}

describe('S3: populate, prune and pop against a real server', () => {
  let bucket: string
  let store: Store
  beforeEach(async () => {
    bucket = await createBucket()
    store = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
  })
  afterEach(async () => {
    await clearFaults()
    await store.close()
  })

  // An empty env: the tests see neither the machine's PUSH_CACHE_* nor its timestamps.
  const optionsFor = (options: Options = {}) =>
    resolveOptions({ app: APP, store: s3StoreUrl(bucket), s3: s3StoreOptions(), timestamp: TIMESTAMP, retries: 1, ...options }, {})

  const push = async (files: Record<string, string | Buffer>, options?: Options) =>
    populate({ store, options: optionsFor(options), files: await collectFiles(await writeBuild(files)) })

  const manifestKeys = async () => (await listObjects(bucket, `manifests/${APP}/`)).map((object) => object.key)
  const dataRelpaths = async () => (await listObjects(bucket, `data/${APP}/`)).map((object) => object.key.slice(`data/${APP}/`.length))

  it('lands every file with its headers, the entrypoint after all others, then the manifest', async () => {
    await push(BUILD, { image: 'quay.io/org/inventory:abc', cacheControl: { rules: { 'js/vendor.*.js': RULED } } })

    expect(await dataRelpaths()).toEqual(Object.keys(BUILD).sort())
    const headers = async (relpath: string) => {
      const object = await getObject(bucket, `data/${APP}/${relpath}`)
      expect(object?.body.toString()).toBe(BUILD[relpath])
      return [object?.contentType, object?.cacheControl]
    }
    expect(await headers('fed-mods.json')).toEqual(['application/json; charset=utf-8', SHORT])
    expect(await headers('index.html')).toEqual(['text/html; charset=utf-8', SHORT])
    expect(await headers('app-info.json')).toEqual(['application/json; charset=utf-8', SHORT])
    expect(await headers('js/main.3f2a9c1b.js')).toEqual(['text/javascript; charset=utf-8', IMMUTABLE])
    expect(await headers('js/vendor.8f7e6d5c.js')).toEqual(['text/javascript; charset=utf-8', RULED])
    expect(await headers('css/style.css')).toEqual(['text/css; charset=utf-8', DEFAULT])
    expect(await headers('images/logo.svg')).toEqual(['image/svg+xml', DEFAULT])
    expect(await headers('dir with space/ünïcødé.txt')).toEqual(['text/plain; charset=utf-8', DEFAULT])

    expect(await manifestKeys()).toEqual([`manifests/${APP}/${TIMESTAMP}`])
    const manifest = JSON.parse((await getObject(bucket, `manifests/${APP}/${TIMESTAMP}`))!.body.toString())
    expect(manifest).toMatchObject({ files: Object.keys(BUILD).sort(), timestamp: TIMESTAMP, image: 'quay.io/org/inventory:abc' })

    const puts = (await requestLog(bucket)).filter((request) => request.method === 'PUT' && !request.key.startsWith('locks/'))
    const entrypoint = puts.find((request) => request.key === `data/${APP}/fed-mods.json`)!
    const manifestPut = puts.find((request) => request.key.startsWith('manifests/'))!
    const assets = puts.filter((request) => request !== entrypoint && request !== manifestPut)
    expect(assets).toHaveLength(Object.keys(BUILD).length - 1)
    expect(entrypoint.start).toBeGreaterThan(Math.max(...assets.map((request) => request.end)))
    expect(manifestPut.start).toBeGreaterThan(entrypoint.end)
  })

  it('fails on an upload that keeps failing, naming file, store and cause, and writes no entrypoint and no manifest', async () => {
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/js/main.3f2a9c1b.js` })
    await expect(push(BUILD)).rejects.toMatchObject({
      code: 'UPLOAD_FAILED',
      message: expect.stringMatching(new RegExp(`js/main\\.3f2a9c1b\\.js to s3://${bucket} .*(ServiceUnavailable|HTTP 503)`)),
    })

    expect(await dataRelpaths()).not.toContain('fed-mods.json')
    expect(await manifestKeys()).toEqual([])
    const attempts = (await requestLog(bucket)).filter((request) => request.key === `data/${APP}/js/main.3f2a9c1b.js`)
    expect(attempts.map((request) => request.status)).toEqual([503, 503]) // the first try and `retries: 1`
  })

  it('retries a transient failure and completes the build', async () => {
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/css/style.css`, times: 1 })
    await push(BUILD)
    expect(await dataRelpaths()).toEqual(Object.keys(BUILD).sort())
    expect(await manifestKeys()).toEqual([`manifests/${APP}/${TIMESTAMP}`])
    const attempts = (await requestLog(bucket)).filter((request) => request.key === `data/${APP}/css/style.css`)
    expect(attempts.map((request) => request.status)).toEqual([503, 200])
  })

  it('retries a reset connection', async () => {
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/css/style.css`, reset: true, times: 1 })
    await push(BUILD)
    expect((await getObject(bucket, `data/${APP}/css/style.css`))?.body.toString()).toBe(BUILD['css/style.css'])
  })

  it('skips a build whose image the newest manifest already records', async () => {
    await push(BUILD, { image: 'quay.io/org/inventory:abc' })
    const report = await push(BUILD, { image: 'quay.io/org/inventory:abc', timestamp: TIMESTAMP + 60 })
    expect(report.skipped).toBe('same-image')
    expect(await manifestKeys()).toEqual([`manifests/${APP}/${TIMESTAMP}`])
  })

  it('compares with the newest build only, reading that one manifest', async () => {
    await push(BUILD, { image: 'quay.io/org/inventory:abc' })
    await push(BUILD, { image: 'quay.io/org/inventory:def', timestamp: TIMESTAMP + 60 })
    const report = await push(BUILD, { image: 'quay.io/org/inventory:abc', timestamp: TIMESTAMP + 120 })
    expect(report.skipped).toBeUndefined()
    const manifestReads = (await requestLog(bucket)).filter((request) => request.method === 'GET' && request.key.startsWith(`manifests/${APP}/`))
    expect(manifestReads.map((request) => request.key)).toEqual([`manifests/${APP}/${TIMESTAMP}`, `manifests/${APP}/${TIMESTAMP + 60}`])
  })

  it('sends a large file as a multipart upload', async () => {
    const size = 20 * 1024 * 1024
    await push({ 'fed-mods.json': '{}', 'big.bin': randomBytes(size) })
    expect(await listObjects(bucket, `data/${APP}/big.bin`)).toEqual([{ key: `data/${APP}/big.bin`, size }])
    const requests = (await requestLog(bucket)).filter((request) => request.key === `data/${APP}/big.bin`)
    expect(requests.filter((request) => request.query.includes('partNumber='))).toHaveLength(3) // 8 + 8 + 4 MiB
    expect(requests.filter((request) => request.method === 'POST').map((request) => request.query)).toEqual([
      expect.stringContaining('uploads'),
      expect.stringContaining('uploadId='),
    ])
  })

  it.runIf(existsSync('/proc/self/io'))('reads each byte of a large file once, for its parts, their Content-MD5 and the MD5 the manifest records', async () => {
    const size = 20 * 1024 * 1024
    const large = randomBytes(size)
    // Bytes this process read through read(2), the test's own sockets included: a second read of the file would add 20 MiB.
    const bytesRead = async () => Number(/^rchar: (\d+)$/m.exec(await readFile('/proc/self/io', 'utf8'))![1])
    const before = await bytesRead()
    await push({ 'fed-mods.json': '{}', 'big.bin': large })
    expect((await bytesRead()) - before).toBeLessThan(1.5 * size)
    const manifest = JSON.parse((await getObject(bucket, `manifests/${APP}/${TIMESTAMP}`))!.body.toString())
    expect(manifest.details.md5[manifest.files.indexOf('big.bin')]).toBe(createHash('md5').update(large).digest('hex'))
  })

  it('prunes what only dying builds named, keeps the newest `keep`, never the entrypoint', async () => {
    await push({ 'fed-mods.json': '1', 'a.3f2a9c1b.js': 'a', 'shared.css': 's' }, { timestamp: 1000 })
    await push({ 'fed-mods.json': '2', 'b.4e3d2c1a.js': 'b', 'shared.css': 's' }, { timestamp: 2000 })
    await push({ 'fed-mods.json': '3', 'c.5a4b3c2d.js': 'c', 'shared.css': 's' }, { timestamp: 3000 })

    const report = await prune({ store, app: APP, rule: { now: 3000 + 30 * DAY, olderThanSeconds: DAY, keep: 2 }, entrypoints: ['fed-mods.json'] })

    expect(report).toMatchObject({ builds: [1000], keys: [`data/${APP}/a.3f2a9c1b.js`], kept: 2 })
    expect(await dataRelpaths()).toEqual(['b.4e3d2c1a.js', 'c.5a4b3c2d.js', 'fed-mods.json', 'shared.css'])
    expect(await manifestKeys()).toEqual([`manifests/${APP}/2000`, `manifests/${APP}/3000`])
  })

  it('reads and prunes valpop manifests, object and bare array', async () => {
    for (const relpath of ['fed-mods.json', 'old.js', 'shared.js', 'mid.js', 'new.js']) await putObject(bucket, `data/${APP}/${relpath}`, relpath)
    await putObject(
      bucket,
      `manifests/${APP}/100`,
      JSON.stringify({ files: ['fed-mods.json', 'old.js', 'shared.js'], image: 'quay.io/org/inventory:1', valpopImage: 'quay.io/valpop:1', timestamp: 100 }),
    )
    await putObject(bucket, `manifests/${APP}/200`, JSON.stringify(['shared.js', 'mid.js']))
    await putObject(bucket, `manifests/${APP}/300`, JSON.stringify({ files: ['new.js'], timestamp: 300 }))
    const pruneKeeping = (keep: number) =>
      prune({ store, app: APP, rule: { now: 300 + 30 * DAY, olderThanSeconds: DAY, keep }, entrypoints: ['fed-mods.json'] })

    // The bare-array build 200 survives and protects shared.js; the entrypoint is never deleted.
    expect(await pruneKeeping(2)).toMatchObject({ builds: [100], keys: [`data/${APP}/old.js`] })
    expect(await dataRelpaths()).toEqual(['fed-mods.json', 'mid.js', 'new.js', 'shared.js'])

    expect(await pruneKeeping(1)).toMatchObject({ builds: [200], keys: [`data/${APP}/mid.js`, `data/${APP}/shared.js`] })
    expect(await dataRelpaths()).toEqual(['fed-mods.json', 'new.js'])
    expect(await manifestKeys()).toEqual([`manifests/${APP}/300`])
  })

  it('stops the prune at an unreadable manifest and deletes nothing', async () => {
    await push({ 'fed-mods.json': '1', 'a.js': 'a' }, { timestamp: 1000 })
    await push({ 'fed-mods.json': '2', 'b.js': 'b' }, { timestamp: 2000 })
    await putObject(bucket, `manifests/${APP}/1500`, 'not json')
    const before = await listObjects(bucket)

    const report = await prune({ store, app: APP, rule: { now: 2000 + 30 * DAY, olderThanSeconds: DAY, keep: 1 }, entrypoints: ['fed-mods.json'] })

    expect(report.aborted).toContain(`manifests/${APP}/1500`)
    expect(report.builds).toEqual([])
    expect(await listObjects(bucket)).toEqual(before)
  })

  it('pops the current files of the app into a directory', async () => {
    await push(BUILD)
    const dest = join(root, `pop-${randomBytes(4).toString('hex')}`)
    const report = await pop({ store, app: APP, dest })
    expect(report.files).toBe(Object.keys(BUILD).length)
    for (const [relpath, content] of Object.entries(BUILD)) expect(await readFile(join(dest, relpath), 'utf8')).toBe(content)
  })

  it('leaves the destination as it was when a download keeps failing', async () => {
    await push(BUILD)
    await injectFault({ bucket, method: 'GET', key: `data/${APP}/images/logo.svg` })
    const dest = await writeBuild({ 'fed-mods.json': 'previous', 'css/style.css': 'previous' })
    await expect(pop({ store, app: APP, dest, retries: 1 })).rejects.toMatchObject({
      code: 'DOWNLOAD_FAILED',
      message: expect.stringContaining(`data/${APP}/images/logo.svg`),
    })
    expect(await readFile(join(dest, 'fed-mods.json'), 'utf8')).toBe('previous')
    expect(await readFile(join(dest, 'css/style.css'), 'utf8')).toBe('previous')
    expect((await readdir(dirname(dest))).filter((name) => name.includes(basename(dest)))).toEqual([basename(dest)]) // no staging left behind
  })
})
