import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it, onTestFinished } from 'vitest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import type { Store } from '../../src/core/store/store'
import { resolveOptions } from '../../src/options'
import { createS3Store } from '../../src/stores/s3'
import { readTree, tempDir, writeTree } from '../helpers/fs'
import { createTripDepth, inFlightCountingStore, s3StoresBehindTripProxy, tripCountingStore, versionedBuild } from '../helpers/round-trips'
import { createBucket, s3StoreOptions, s3StoreUrl } from '../helpers/s3'
import { uniqueApp } from '../helpers/valkey'

/**
 * A pop of the next build onto the one `dest` serves, on a long link: what it waits for one after
 * another is what a round trip multiplies. 1,200 files (two pages of listing), 60 of them changed
 * (5%: new hashed names as a bundler gives them, and the entrypoint).
 */
const FILES = 1200
const CHANGED = 60
/**
 * Store calls one after another: the manifests listed; the newest manifest read beside the data
 * listing; the downloads, all in one wave, the entrypoint (its MD5 pinned) and the check for a
 * newer manifest among them, beside the listing's end. It took 8: the downloads 16 at a time, then
 * the entrypoint, then the check; then 4, the entrypoint and the check waiting for the listing.
 */
const BUDGET = 3
/** Round trips to the end of the data listing: its pages at once, beside the manifest's read (they came one after another: 3). */
const LISTING_BUDGET = 2

const chunk = (i: number, version: number) => `js/chunk-${i}.${(i * 2654435761 + version).toString(16).padStart(8, '0').slice(-8)}.js`

async function buildDir(version: number): Promise<string> {
  const files: Record<string, string> = { 'index.html': '<!doctype html>', 'fed-mods.json': `{"inventory":{"v":${version}}}` }
  for (let i = 0; i < FILES - 2; i++) files[chunk(i, i < CHANGED - 1 ? version : 0)] = `console.log(${i}, ${i < CHANGED - 1 ? version : 0})`
  return writeTree(await tempDir(), files)
}

const push = async (store: Store, app: string, dir: string, timestamp: number) =>
  populate({ store, options: resolveOptions({ app, store: 'unused', timestamp, retries: 1 }, {}), files: await collectFiles(dir) })

describe(`a pop of a 5%-changed ${FILES}-file build onto the one dest serves`, () => {
  it(`takes at most ${BUDGET} sequential store calls on S3, the listing's pages ${LISTING_BUDGET} round trips`, async () => {
    const { plain, counted, trips } = await s3StoresBehindTripProxy()
    const app = uniqueApp()
    const dest = join(await tempDir(), 'www')
    await push(plain, app, await buildDir(1), 1000)
    await pop({ store: plain, app, dest })
    const next = await buildDir(2)
    await push(plain, app, next, 2000)
    trips.reset()
    // Counted where pop calls the store too: the proxy sees a request once the SDK sent it, and
    // on a busy machine an answer may come back before the SDK has sent the last of a wave.
    const calls = createTripDepth()
    const report = await pop({ store: tripCountingStore(counted, calls), app, dest })
    expect(report).toMatchObject({ downloaded: { files: CHANGED }, timestamp: 2000 })
    expect(calls.deepest(), calls.log.join('\n')).toBeLessThanOrEqual(BUDGET)
    const listing = trips.log.filter((line) => line.includes(' list data/'))
    expect(Math.max(...listing.map((line) => Number.parseInt(line, 10))), listing.join('\n')).toBeLessThanOrEqual(LISTING_BUDGET)
    // The files of the older build are still listed, and served beside the new ones.
    const served = await readTree(dest)
    expect(Object.keys(served)).toHaveLength(FILES + CHANGED - 1)
    expect(served['fed-mods.json']).toBe('{"inventory":{"v":2}}')
  }, 180_000)
})

describe('a pop of a hundred changed files over a 100 ms link', () => {
  const CHANGED_FILES = 100

  it('downloads them at once, as wide as the link the first answers showed (from the default 64: in two waves)', async () => {
    const { plain, counted } = await s3StoresBehindTripProxy(100)
    const build = (version: number) => versionedBuild(CHANGED_FILES, version)
    const app = uniqueApp()
    const dest = join(await tempDir(), 'www')
    await push(plain, app, await build(1), 1000)
    await pop({ store: plain, app, dest })
    await push(plain, app, await build(2), 2000)
    const { store, most } = inFlightCountingStore(counted)
    const report = await pop({ store, app, dest })
    expect(report).toMatchObject({ downloaded: { files: CHANGED_FILES + 2 }, timestamp: 2000 })
    // All 100 when the machine starts them within a round trip; more than the default 64 in any case.
    expect(most()).toBeGreaterThan(64)
  }, 60_000)
})

/**
 * `store`, with the end of its listing of `prefix` held until a key under it is read, or `holdMs`
 * passed: a pop that waits for the whole listing before its first download waits out the hold.
 */
function listingHeldUntilRead(store: Store, prefix: string, holdMs: number): { store: Store; readBeforeListed: () => boolean | undefined } {
  let listed = false
  let readBeforeListed: boolean | undefined
  let wake = () => {}
  const firstRead = new Promise<void>((resolve) => {
    wake = resolve
  })
  const held: Store = {
    ...store,
    read(key) {
      if (key.startsWith(prefix)) {
        readBeforeListed ??= !listed
        wake()
      }
      return store.read(key)
    },
    async *list(listedPrefix) {
      yield* store.list(listedPrefix)
      if (listedPrefix !== prefix) return
      await Promise.race([firstRead, sleep(holdMs)])
      listed = true
    },
  }
  return { store: held, readBeforeListed: () => readBeforeListed }
}

describe(`a cold pop of a ${FILES}-file build`, () => {
  it('starts downloading the files the newest manifest pins before the data listing ends', async () => {
    const bucket = await createBucket()
    const plain = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
    onTestFinished(() => plain.close())
    const app = uniqueApp()
    await push(plain, app, await buildDir(1), 1000)
    // The listing's pages come one after another (dest serves nothing to cut it at): it waited for them all.
    const { store, readBeforeListed } = listingHeldUntilRead(plain, `data/${app}/`, 5_000)
    const report = await pop({ store, app, dest: join(await tempDir(), 'www') })
    expect(report).toMatchObject({ downloaded: { files: FILES }, timestamp: 1000 })
    expect(readBeforeListed()).toBe(true)
  }, 180_000)
})
