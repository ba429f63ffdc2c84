import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest'
import { type Fault, startFaultProxy } from '../helpers/fault-proxy'
import { besideDest, QUICK, recordingLogger, release, SLACK_MS, stepBoundMs, timedPop, timedPush } from '../helpers/faults'
import { readTree, tempDir, writeTree } from '../helpers/fs'
import { clearFaults, createBucket, getObject, injectFault, listObjects, requestLog, s3StoreOptions, s3StoreUrl } from '../helpers/s3'

const APP = 'shop'
const OLD = 1000
const NEW = 2000
const upstream = new URL(inject('s3').upstream)
const proxy = await startFaultProxy({ host: upstream.hostname, port: Number(upstream.port) })
/** The store's endpoint when the test proxy stands between it and the server. */
const THROUGH_PROXY = `http://127.0.0.1:${proxy.port}`

let bucket: string
beforeEach(async () => {
  bucket = await createBucket()
})
afterEach(async () => {
  proxy.heal()
  await clearFaults()
})

const options = (timestamp: number, endpoint = s3StoreOptions().endpoint) => ({
  app: APP,
  store: s3StoreUrl(bucket),
  s3: { ...s3StoreOptions(), endpoint },
  timestamp,
  ...QUICK,
})

/** Build OLD, pushed without faults: what the bucket served before the faulty push. */
async function pushOld(): Promise<void> {
  const { error } = await timedPush(options(OLD), await writeTree(await tempDir(), release('v1')))
  expect(error).toBeUndefined()
}

/**
 * What a reader of the bucket may rely on after any fault: the entrypoint names only files that
 * are there, every manifest names only files that are there, and a failed build has no manifest.
 * Resolves to the version the entrypoint serves.
 */
async function expectConsistent(failed?: number): Promise<string> {
  const keys = new Set((await listObjects(bucket)).map((object) => object.key))
  const entrypoint = JSON.parse((await getObject(bucket, `data/${APP}/fed-mods.json`))!.body.toString()) as { version: string; files: string[] }
  for (const file of entrypoint.files) expect(keys, `the entrypoint of ${entrypoint.version} names ${file}`).toContain(`data/${APP}/${file}`)
  for (const key of keys) {
    if (!key.startsWith(`manifests/${APP}/`)) continue
    const manifest = JSON.parse((await getObject(bucket, key))!.body.toString()) as { files: string[] }
    for (const file of manifest.files) expect(keys, `${key} names ${file}`).toContain(`data/${APP}/${file}`)
  }
  if (failed !== undefined) expect(keys).not.toContain(`manifests/${APP}/${failed}`)
  return entrypoint.version
}

describe('S3: transient faults are retried with backoff and the push completes', () => {
  it.each<[string, Fault]>([
    ['connections reset as soon as they open', { kind: 'reset' }],
    ['connections dropped mid-upload', { kind: 'drop', afterBytes: 64 * 1024 }],
    ['connections that accept and never answer', { kind: 'stall' }],
    ['answers trickling slower than the deadline', { kind: 'trickle', bytesPerSecond: 100 }],
  ])('%s (two of them)', async (_, fault) => {
    await pushOld()
    const files = release('v2', 6, { 'img/photo.bin': randomBytes(512 * 1024) })
    const met = proxy.met
    proxy.fault(fault, 2)
    const { error } = await timedPush({ ...options(NEW, THROUGH_PROXY), retries: 3 }, await writeTree(await tempDir(), files))

    expect(error).toBeUndefined()
    expect(proxy.met - met).toBe(2) // both faults hit a request, which was retried
    expect(await expectConsistent()).toBe('v2')
    for (const [relpath, content] of Object.entries(files))
      expect((await getObject(bucket, `data/${APP}/${relpath}`))?.body.equals(Buffer.from(content)), relpath).toBe(true)
    expect((await listObjects(bucket, `manifests/${APP}/`)).map((object) => object.key)).toEqual([`manifests/${APP}/${OLD}`, `manifests/${APP}/${NEW}`])
  })

  it('retries the part that lost its connection on its own, and the file lands whole', async () => {
    const large = randomBytes(9 * 1024 * 1024 + 7) // above the 8 MiB threshold: two parts
    const met = proxy.met
    proxy.fault({ kind: 'drop', afterBytes: 1024 * 1024 }, 1) // the first connection that carries a part
    const logger = recordingLogger()
    const push = { ...options(NEW, THROUGH_PROXY), retries: 3, requestTimeout: 10_000 }
    const { error } = await timedPush(push, await writeTree(await tempDir(), release('v2', 0, { 'big.bin': large })), { logger })
    expect(error).toBeUndefined()
    expect(proxy.met).toBe(met + 1)
    expect(logger.warnings.join('\n')).not.toMatch(/retrying big\.bin/) // the store retried the part; core never sent the file again
    expect((await getObject(bucket, `data/${APP}/big.bin`))?.body.equals(large)).toBe(true)
    expect(await expectConsistent()).toBe('v2')
  })

  it('retries 500, 503 and SlowDown answers that last a while', async () => {
    await pushOld()
    await injectFault({ bucket, method: 'PUT', key: /chunk-0\.v2/, status: 503, code: 'SlowDown', times: 2 })
    await injectFault({ bucket, method: 'PUT', key: /chunk-1\.v2/, status: 500, code: 'InternalError', times: 2 })
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/fed-mods.json`, status: 503, times: 2 })
    const { error } = await timedPush({ ...options(NEW), retries: 3 }, await writeTree(await tempDir(), release('v2')))

    expect(error).toBeUndefined()
    const statuses = (await requestLog(bucket))
      .filter((request) => request.key === `data/${APP}/fed-mods.json` && request.method === 'PUT')
      .map((r) => r.status)
    expect(statuses).toEqual([200, 503, 503, 200]) // OLD's, then NEW's two faults and its retry
    expect(await expectConsistent()).toBe('v2')
  })
})

describe('S3: a lasting fault fails the push within the bound, and publishes nothing', () => {
  /** One step, then releasing the push's lease (one request that times out too). */
  const bound = stepBoundMs(QUICK) + QUICK.requestTimeout

  // The push's first request (reading its writer lock) meets the fault: it fails before writing any file.
  it.each<[string, Fault, RegExp]>([
    ['accepts and never answers', { kind: 'stall' }, /timed out: (GET|PUT) \/.* got no complete answer within 500 ms.*`requestTimeout` \(--request-timeout\)/],
    ['answers at a trickle', { kind: 'trickle', bytesPerSecond: 50 }, /timed out: (GET|PUT) .* got no complete answer within 500 ms/],
    ['resets every connection', { kind: 'reset' }, /could not be reached: .*(ECONNRESET|socket hang up)/],
    ['drops every connection mid-upload', { kind: 'drop', afterBytes: 512 }, /could not be reached: .*(ECONNRESET|socket hang up|EPIPE)/],
  ])('a server that %s', async (_, fault, reason) => {
    await pushOld()
    proxy.fault(fault)
    const { error, ms } = await timedPush(options(NEW, THROUGH_PROXY), await writeTree(await tempDir(), release('v2')))

    expect(error?.message).toContain(`s3://${bucket} at ${THROUGH_PROXY}`)
    expect(error?.message).toMatch(reason)
    expect(ms).toBeLessThan(bound + SLACK_MS)
    expect(await expectConsistent(NEW)).toBe('v1')
  })

  it('a server that stops answering mid-push', async () => {
    await pushOld()
    let stalledAt = 0
    const { error } = await timedPush(options(NEW, THROUGH_PROXY), await writeTree(await tempDir(), release('v2', 40)), {
      onProgress: ({ done }) => {
        if (done.files === 5 && !stalledAt) {
          stalledAt = Date.now()
          proxy.fault({ kind: 'stall' })
        }
      },
    })
    expect(error).toMatchObject({ code: 'UPLOAD_FAILED' })
    expect(error?.message).toContain(`No entrypoint and no manifest of build ${NEW} were written`)
    expect(Date.now() - stalledAt).toBeLessThan(bound + SLACK_MS)
    expect(await expectConsistent(NEW)).toBe('v1')
  })

  it('a read that keeps failing is tried retries + 1 times, not more: the push reading the newest manifest', async () => {
    await pushOld()
    await injectFault({ bucket, method: 'GET', key: `manifests/${APP}/${OLD}`, status: 503 })
    const { error } = await timedPush(options(NEW), await writeTree(await tempDir(), release('v2')))
    expect(error?.message).toContain(`s3://${bucket}`)
    const reads = (await requestLog(bucket)).filter((request) => request.method === 'GET' && request.key === `manifests/${APP}/${OLD}`)
    expect(reads).toHaveLength(QUICK.retries + 1)
    expect(await expectConsistent(NEW)).toBe('v1')
  })

  it('an entrypoint that keeps failing: every asset lands, neither the entrypoint nor the manifest does', async () => {
    await pushOld()
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/fed-mods.json`, status: 503, code: 'SlowDown' })
    const { error } = await timedPush(options(NEW), await writeTree(await tempDir(), release('v2')))

    expect(error).toMatchObject({ code: 'UPLOAD_FAILED' })
    expect(error?.message).toMatch(/Could not push fed-mods\.json .*SlowDown/)
    expect(await getObject(bucket, `data/${APP}/js/chunk-5.v2.js`)).toBeDefined()
    expect(await expectConsistent(NEW)).toBe('v1')
  })
})

describe('S3: pop under faults', () => {
  /** A destination that already serves something: a failed pop must leave it exactly so. */
  async function servingDest(): Promise<string> {
    const dest = join(await tempDir(), 'www')
    await mkdir(dest)
    return writeTree(dest, { 'fed-mods.json': 'what was served', 'js/old.js': 'old' })
  }

  it('a download whose body trickles fails within the bound and leaves the destination as it was', async () => {
    const photo = randomBytes(200 * 1024)
    const { error: pushed } = await timedPush(options(OLD), await writeTree(await tempDir(), release('v1', 2, { 'img/photo.bin': photo })))
    expect(pushed).toBeUndefined()
    const dest = await servingDest()
    // Fast enough for the listing, far too slow for 200 KiB: the body stalls mid-stream.
    proxy.fault({ kind: 'trickle', bytesPerSecond: 20_000 })
    const requestTimeout = 1000
    const { error, ms } = await timedPop({ ...options(OLD, THROUGH_PROXY), requestTimeout }, dest)

    expect(error).toMatchObject({ code: 'DOWNLOAD_FAILED' })
    expect(error?.message).toMatch(/Could not download data\/shop\/img\/photo\.bin from s3:\/\/.* timed out: GET .* got no complete answer within 1000 ms/)
    expect(error?.message).toContain(`${dest} was left as it was`)
    expect(ms).toBeLessThan(stepBoundMs({ ...QUICK, requestTimeout }) + SLACK_MS)
    expect(await readTree(dest)).toEqual({ 'fed-mods.json': 'what was served', 'js/old.js': 'old' })
    expect(await besideDest(dest)).toEqual([])

    proxy.heal()
    const { error: healed } = await timedPop(options(OLD, THROUGH_PROXY), dest)
    expect(healed).toBeUndefined()
    expect((await readTree(dest))['js/chunk-1.v1.js']).toBe('console.log("v1 1")')
  })

  it('retries downloads whose connections were reset, and the pop completes', async () => {
    await pushOld()
    const dest = await servingDest()
    proxy.fault({ kind: 'reset' }, 2)
    const { error } = await timedPop({ ...options(OLD, THROUGH_PROXY), retries: 3 }, dest)
    expect(error).toBeUndefined()
    expect(Object.keys(await readTree(dest)).sort()).toEqual(Object.keys(release('v1')).sort())
  })
})
