import { randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import type { Store } from '../../src/core/store/store'
import { type Options, resolveOptions } from '../../src/options'
import { createS3Store } from '../../src/stores/s3'
import { tempDir, writeTree } from '../helpers/fs'
import { clearFaults, createBucket, getObject, injectFault, listObjects, putObject, requestLog, s3StoreOptions, s3StoreUrl } from '../helpers/s3'

const APP = 'inventory'
const V1 = 1_700_000_000
const V2 = V1 + 60

/** 40 hashed chunks, a few unhashed files and the entrypoint: a rebuild changes some of each. */
const chunks = (version: string, changed: (index: number) => boolean = () => false) =>
  Object.fromEntries(
    Array.from({ length: 40 }, (_, index) => {
      const content = changed(index) ? `chunk ${index} ${version}` : `chunk ${index}`
      const hash = Buffer.from(content).toString('hex').slice(-8).padStart(8, '0')
      return [`js/chunk-${index}.${hash}.js`, content]
    }),
  )
const build1 = { ...chunks('v1'), 'index.html': '<html>v1</html>', 'app-info.json': '{"v":1}', 'fed-mods.json': '{"v":1}' }
/** Two chunks changed (so two new names), index.html changed, fed-mods.json changed. */
const build2 = { ...chunks('v2', (index) => index < 2), 'index.html': '<html>v2</html>', 'app-info.json': '{"v":1}', 'fed-mods.json': '{"v":2}' }

describe('S3: a push writes only what the store does not hold yet', () => {
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

  const push = async (files: Record<string, string | Buffer>, options: Options = {}) =>
    populate({
      store,
      options: resolveOptions({ app: APP, store: s3StoreUrl(bucket), s3: s3StoreOptions(), timestamp: V1, retries: 1, ...options }, {}),
      files: await collectFiles(await writeTree(await tempDir(), files)),
    })
  /** The data objects written since the log was last read (PUTs and multipart parts). */
  const dataWrites = async (since: number) =>
    (await requestLog(bucket))
      .slice(since)
      .filter((request) => request.method === 'PUT' || (request.method === 'POST' && request.query.includes('uploads')))
      .filter((request) => request.key.startsWith(`data/${APP}/`) && !request.query.includes('partNumber'))
      .map((request) => request.key.slice(`data/${APP}/`.length))
  const served = async () =>
    Object.fromEntries(
      await Promise.all(
        (await listObjects(bucket, `data/${APP}/`)).map(async ({ key }) => [key.slice(`data/${APP}/`.length), (await getObject(bucket, key))!.body.toString()]),
      ),
    )

  it('pushes the same build again without writing a single data object', async () => {
    await push(build1)
    const before = (await requestLog(bucket)).length
    const report = await push(build1, { timestamp: V2 })

    expect(await dataWrites(before)).toEqual([])
    expect(report).toMatchObject({ uploaded: 0, bytes: 0, unchanged: Object.keys(build1).length })
    expect((await listObjects(bucket, `manifests/${APP}/`)).map((object) => object.key)).toEqual([`manifests/${APP}/${V1}`, `manifests/${APP}/${V2}`])
  })

  it('writes exactly the new and changed files of a rebuild: new names first, then changed ones, then the entrypoint', async () => {
    await push(build1)
    const before = (await requestLog(bucket)).length
    const report = await push(build2, { timestamp: V2 })

    const newNames = Object.keys(build2).filter((relpath) => !(relpath in build1))
    expect(newNames).toHaveLength(2)
    const writes = await dataWrites(before)
    expect(writes.slice(0, 2).sort()).toEqual(newNames.sort())
    expect(writes.slice(2)).toEqual(['index.html', 'fed-mods.json'])
    expect(report).toMatchObject({ added: 2, changed: 2, uploaded: 4, unchanged: Object.keys(build2).length - 4 })
    expect(await served()).toMatchObject(build2)
  })

  it('leaves every served byte as it was when a new file of the rebuild fails', async () => {
    await push(build1)
    const newName = Object.keys(build2).find((relpath) => !(relpath in build1))!
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/${newName}` })

    await expect(push(build2, { timestamp: V2 })).rejects.toMatchObject({ code: 'UPLOAD_FAILED' })
    const now = await served()
    expect(Object.fromEntries(Object.keys(build1).map((relpath) => [relpath, now[relpath]]))).toEqual(build1)
    expect((await listObjects(bucket, `manifests/${APP}/`)).map((object) => object.key)).toEqual([`manifests/${APP}/${V1}`])
  })

  it('writes again a file deleted or rewritten behind its back', async () => {
    await push(build1)
    const { body } = (await getObject(bucket, `data/${APP}/app-info.json`))!
    await putObject(bucket, `data/${APP}/app-info.json`, 'tampered')
    await store.delete([`data/${APP}/index.html`])
    const before = (await requestLog(bucket)).length
    await push(build1, { timestamp: V2 })

    expect((await dataWrites(before)).sort()).toEqual(['app-info.json', 'index.html'])
    expect((await getObject(bucket, `data/${APP}/app-info.json`))!.body).toEqual(body)
  })

  it('rewrites exactly the files whose headers changed, with the new headers', async () => {
    await push(build1)
    const before = (await requestLog(bucket)).length
    await push(build1, { timestamp: V2, cacheControl: { rules: { '*.json': 'public, max-age=5' } } })

    expect((await dataWrites(before)).sort()).toEqual(['app-info.json', 'fed-mods.json'])
    expect((await getObject(bucket, `data/${APP}/app-info.json`))?.cacheControl).toBe('public, max-age=5')
  })

  it('skips a multipart upload it wrote before, by the version tag its manifest recorded', async () => {
    const large = { 'big.bin': randomBytes(9 * 1024 * 1024), 'fed-mods.json': '{}' }
    await push(large)
    const before = (await requestLog(bucket)).length
    const report = await push(large, { timestamp: V2 })

    expect(await dataWrites(before)).toEqual([])
    expect(report.unchanged).toBe(2)
  })

  it('writes everything with `force`', async () => {
    await push(build1)
    const before = (await requestLog(bucket)).length
    const report = await push(build1, { timestamp: V2, force: true })

    expect(await dataWrites(before)).toHaveLength(Object.keys(build1).length)
    expect(report).toMatchObject({ unchanged: 0, changed: Object.keys(build1).length })
  })
})

describe('S3: an older build pushed after a newer one', () => {
  it('adds its new files and manifest but replaces nothing the newer build serves', async () => {
    const bucket = await createBucket()
    const store = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
    const push = async (files: Record<string, string>, timestamp: number) =>
      populate({
        store,
        options: resolveOptions({ app: APP, store: s3StoreUrl(bucket), s3: s3StoreOptions(), timestamp }, {}),
        files: await collectFiles(await writeTree(await tempDir(), files)),
      })
    try {
      await push(build2, V2)
      const report = await push(build1, V1)
      expect(report).toMatchObject({ superseded: true, changed: 0, added: 2 })
      const served = await getObject(bucket, `data/${APP}/fed-mods.json`)
      expect(served?.body.toString()).toBe(build2['fed-mods.json'])
      expect((await getObject(bucket, `data/${APP}/index.html`))?.body.toString()).toBe(build2['index.html'])
    } finally {
      await store.close()
    }
  })
})
