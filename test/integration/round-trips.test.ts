import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import type { Store } from '../../src/core/store/store'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { createValkeyStore } from '../../src/stores/valkey'
import { tempDir, writeTree } from '../helpers/fs'
import {
  createTripDepth,
  inFlightCountingStore,
  s3StoresBehindTripProxy,
  startBurstProxy,
  type TripDepth,
  tripCountingStore,
  versionedBuild,
} from '../helpers/round-trips'
import { rawClient, uniqueApp, valkeyEnv, valkeyUrl } from '../helpers/valkey'

/**
 * Issue 20 item 3: the same build pushed again costs at most 5 sequential round trips on S3 and
 * the local store (the steps the README lists: the data listing's pages all at once), and
 * ⌈files/1000⌉ + 4 on Valkey (the budget; the app's index lists 5,000 keys per two round trips), with a new timestamp (a CI job
 * building the same sources) and with the same one (a re-run CI job). 3,000 files: three pages.
 */
const FILES = 3000
const BUDGET = 5
const VALKEY_BUDGET = Math.ceil(FILES / 1000) + 4

async function buildDir(): Promise<string> {
  const files: Record<string, string> = { 'index.html': '<!doctype html>', 'fed-mods.json': '{"inventory":{}}' }
  for (let i = 0; i < FILES - 2; i++) files[`js/chunk-${i}.${(i * 2654435761).toString(16).padStart(8, '0').slice(-8)}.js`] = `console.log(${i})`
  return writeTree(await tempDir(), files)
}

const push = async (store: Store, app: string, dir: string, timestamp: number) =>
  populate({ store, options: resolveOptions({ app, store: 'unused', timestamp, retries: 1 }, {}), files: await collectFiles(dir) })

/** Pushes once, then again with a new and with the same timestamp through `counted`: the trips of each re-push. */
async function repushTrips(plain: Store, counted: Store, trips: TripDepth) {
  const app = uniqueApp()
  const dir = await buildDir()
  await push(plain, app, dir, 1000)
  trips.reset()
  const again = await push(counted, app, dir, 2000)
  const newTimestamp = { trips: trips.deepest(), log: [...trips.log] }
  trips.reset()
  const rerun = await push(counted, app, dir, 2000)
  const sameTimestamp = { trips: trips.deepest(), log: [...trips.log] }
  expect(again).toMatchObject({ uploaded: 0, unchanged: FILES })
  expect(rerun).toMatchObject({ skipped: 'same-build' })
  return { newTimestamp, sameTimestamp }
}

/** The depth, with the requests that made it when it is over the budget. */
const withinBudget = ({ trips, log }: { trips: number; log: string[] }, budget = BUDGET) => (trips <= budget ? trips : `${trips} trips:\n${log.join('\n')}`)

describe(`the same ${FILES}-file build pushed again`, () => {
  it(`takes at most ${BUDGET} sequential round trips on S3, listing pages included`, async () => {
    const { plain, counted, trips } = await s3StoresBehindTripProxy()
    const { newTimestamp, sameTimestamp } = await repushTrips(plain, counted, trips)
    expect(withinBudget(newTimestamp)).toBe(newTimestamp.trips)
    expect(withinBudget(sameTimestamp)).toBe(sameTimestamp.trips)
  }, 120_000)

  it.each([
    ['local', async () => createLocalStore(await tempDir()), BUDGET],
    ['valkey', async () => createValkeyStore(valkeyUrl(), {}), VALKEY_BUDGET],
  ] as const)(
    'takes at most its budget of sequential store calls on the %s store',
    async (_kind, open, budget) => {
      const store = await open()
      const trips = createTripDepth()
      try {
        const { newTimestamp, sameTimestamp } = await repushTrips(store, tripCountingStore(store, trips), trips)
        expect(withinBudget(newTimestamp, budget)).toBe(newTimestamp.trips)
        expect(withinBudget(sameTimestamp, budget)).toBe(sameTimestamp.trips)
      } finally {
        await store.close()
      }
    },
    120_000,
  )
})

describe('a build with new, changed and entrypoint files pushed onto the one before', () => {
  /**
   * The steps on S3: the writer lock, the manifests listed then the newest read (the data listing
   * beside them), the new files with the pending record beside them, the changed ones, the
   * entrypoint, the manifest, the record's delete beside the lock's release. No step asks the
   * store again whether a newer build came: the writer lock, confirmed, says none did.
   */
  const CHANGED_BUDGET = 8

  it(`takes at most ${CHANGED_BUDGET} sequential round trips on S3`, async () => {
    const { plain, counted, trips } = await s3StoresBehindTripProxy()
    const before = { 'index.html': '<!doctype html>1', 'fed-mods.json': '{"inventory":{"v":1}}', 'js/chunk-a.0a1b2c3d.js': 'a' }
    const after = { 'index.html': '<!doctype html>2', 'fed-mods.json': '{"inventory":{"v":2}}', 'js/chunk-a.0a1b2c3d.js': 'a', 'js/chunk-b.4e5f6a7b.js': 'b' }
    const app = uniqueApp()
    await push(plain, app, await writeTree(await tempDir(), before), 1000)
    trips.reset()
    const report = await push(counted, app, await writeTree(await tempDir(), after), 2000)
    expect(report).toMatchObject({ added: 1, changed: 2, unchanged: 1 })
    expect(withinBudget({ trips: trips.deepest(), log: trips.log }, CHANGED_BUDGET)).toBe(trips.deepest())
  }, 120_000)
})

describe('a hundred changed files pushed over a 100 ms link', () => {
  const CHANGED = 100

  it('go at once, as wide as the link the first answers showed (from 32, probing: in three waves)', async () => {
    const { plain, counted } = await s3StoresBehindTripProxy(100)
    const build = (version: number) => versionedBuild(CHANGED, version)
    const app = uniqueApp()
    await push(plain, app, await build(1), 1000)
    const { store, most } = inFlightCountingStore(counted)
    const report = await push(store, app, await build(2), 2000)
    expect(report).toMatchObject({ changed: CHANGED + 2 })
    // All 100 when the machine starts them within a round trip; the probe from 32 reaches 64 at most.
    expect(most()).toBeGreaterThan(64)
  }, 60_000)
})

describe('the Valkey store', () => {
  it('persists a build of 3,000 keys in one round trip', async () => {
    const keys = Array.from({ length: 3000 }, (_, i) => `data:${uniqueApp()}:1:${i}.js`)
    const valkey = rawClient()
    await Promise.all(keys.map((key) => valkey.set(key, 'x', 'EX', 600)))
    const proxy = await startBurstProxy(valkeyEnv().standalone, 100)
    const store = createValkeyStore(`valkey://127.0.0.1:${proxy.port}`, {})
    try {
      // Connecting costs its own round trip (INFO, the ready check).
      expect(await store.exists!([keys[0]!])).toEqual([true])
      const before = proxy.bursts()
      expect(await store.persist!(keys)).toEqual([])
      expect(proxy.bursts() - before).toBe(1)
      expect(await Promise.all(keys.map((key) => valkey.ttl(key)))).toEqual(keys.map(() => -1))
    } finally {
      await store.close()
    }
  }, 60_000)
})

describe('a pop onto a destination that holds the current build', () => {
  it('takes 2 sequential round trips on S3: the manifests listed once, beside the data listing', async () => {
    const { plain, counted, trips } = await s3StoresBehindTripProxy()
    const app = uniqueApp()
    const dest = join(await tempDir(), 'www')
    await populate({
      store: plain,
      options: resolveOptions({ app, store: 'unused', timestamp: 1000, retries: 1 }, {}),
      files: await collectFiles(await writeTree(await tempDir(), { 'index.html': '<!doctype html>', 'fed-mods.json': '{}' })),
    })
    await pop({ store: plain, app, dest })
    trips.reset()
    expect(await pop({ store: counted, app, dest })).toMatchObject({ downloaded: { files: 0 } })
    expect(trips.deepest(), trips.log.join('\n')).toBe(2)
  }, 120_000)
})
