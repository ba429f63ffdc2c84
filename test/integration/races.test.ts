import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { entryOf } from '../../src/core/model/manifest'
import { prune } from '../../src/core/prune/prune'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { listBuilds } from '../../src/core/store/builds'
import { layoutOf } from '../../src/core/store/layout'
import type { Store } from '../../src/core/store/store'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { createS3Store } from '../../src/stores/s3'
import { createValkeyStore } from '../../src/stores/valkey'
import { tempDir, writeTree } from '../helpers/fs'
import { createBucket, s3StoreOptions, s3StoreUrl } from '../helpers/s3'
import { uniqueApp, valkeyUrl } from '../helpers/valkey'

const ITERATIONS = 12
const FOREVER_LATER = 4_000_000_000

/**
 * Build `i` shares `alt-<i % 2>.js` with build `i - 2` only: a push of build `i` finds it unchanged
 * in a build that a prune running at the same time (keeping one build) may see as dying.
 */
const buildFiles = (i: number) => ({ 'fed-mods.json': `{"build":${i}}`, 'common.js': 'common', [`alt-${i % 2}.js`]: `alt ${i % 2}` })

/** The real store, with the first write of a data key held until `release()`: a push stopped mid-flight. */
function holdFirstDataWrite(store: Store, app: string) {
  let release!: () => void
  const released = new Promise<void>((resolve) => (release = resolve))
  let reached!: () => void
  const held = new Promise<void>((resolve) => (reached = resolve))
  const prefix = layoutOf(store).dataPrefix(app)
  const put: Store['put'] = async (key, body, options) => {
    if (key.startsWith(prefix)) {
      reached()
      await released
    }
    return store.put(key, body, options)
  }
  return { store: { ...store, put }, held, release }
}

/** Every key that some complete build of `app` names but the store no longer holds. */
async function missingFiles(store: Store, app: string): Promise<string[]> {
  const layout = layoutOf(store)
  const held = new Set<string>()
  for await (const { key } of store.list(layout.dataPrefix(app))) held.add(key)
  const missing: string[] = []
  for (const build of await listBuilds(store, app)) {
    if (!build.complete) continue
    for (const relpath of build.files) {
      const key = layout.dataKey(app, entryOf(build.manifest, relpath)?.version ?? build.timestamp, relpath)
      if (!held.has(key)) missing.push(`build ${build.timestamp}: ${key}`)
    }
  }
  return missing
}

const stores: [string, () => Promise<Store>][] = [
  ['S3', async () => createS3Store(s3StoreUrl(await createBucket()), s3StoreOptions())],
  ['Valkey', async () => createValkeyStore(valkeyUrl(), {})],
  ['a local directory', async () => createLocalStore(await tempDir())],
]

describe.each(stores)('%s: pushes and prunes of one app at the same time', (_, open) => {
  const push = async (store: Store, app: string, i: number) =>
    populate({
      store,
      options: resolveOptions({ app, store: 'unused', timestamp: 1000 + i, retries: 2 }, {}),
      files: await collectFiles(await writeTree(await tempDir(), buildFiles(i))),
    })
  const pruneAll = (store: Store, app: string) =>
    prune({ store, app, rule: { now: FOREVER_LATER, olderThanSeconds: 0, keep: 1 }, entrypoints: ['fed-mods.json'], retries: 2 })

  it(`never deletes a file a build relies on, over ${ITERATIONS} rounds of two pushes and a prune at once`, async () => {
    const store = await open()
    const app = uniqueApp()
    try {
      await push(store, app, 0)
      await push(store, app, 1)
      for (let round = 1; round <= ITERATIONS; round++) {
        // The prune starts at a different point of the pushes in each round.
        const pruning = sleep(round % 4).then(() => pruneAll(store, app))
        await Promise.all([push(store, app, 2 * round), push(store, app, 2 * round + 1), pruning])
        expect(await missingFiles(store, app), `round ${round}`).toEqual([])
      }
      await pruneAll(store, app)
      expect(await missingFiles(store, app)).toEqual([])
      expect((await listBuilds(store, app)).map((build) => build.timestamp)).toEqual([1000 + 2 * ITERATIONS + 1])
    } finally {
      await store.close()
    }
  })

  it('never deletes a file that a push stopped between its plan and its manifest relies on', async () => {
    const store = await open()
    const app = uniqueApp()
    try {
      await push(store, app, 0)
      await push(store, app, 1)
      // Build 3 relies on alt-1.js of build 1 and stops at its first write; build 4 lands without
      // alt-1.js, so a prune keeping one build finds build 1 dying and alt-1.js named by no survivor.
      // Both wait for the writer lock that build 3 holds, then run.
      const stopped = holdFirstDataWrite(store, app)
      const pushing = push(stopped.store, app, 3)
      await stopped.held
      const others = push(store, app, 4).then(() => pruneAll(store, app))
      await sleep(300)
      stopped.release()
      await others
      expect(await pushing).toMatchObject({ unchanged: expect.any(Number) })
      expect(await missingFiles(store, app)).toEqual([])
    } finally {
      await store.close()
    }
  })
})
