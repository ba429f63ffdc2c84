import { prune } from '../../src/core/prune/prune'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import { watch } from '../../src/core/serve/watch'
import { readAll } from '../../src/core/store/builds'
import type { Store } from '../../src/core/store/store'
import type { WriterLockTiming } from '../../src/core/store/writer-lock'
import { resolveOptions } from '../../src/options'
import { tempDir, writeTree } from '../helpers/fs'
import { type StoreKind, storeUnderTest } from '../helpers/stores'
import { uniqueApp } from '../helpers/valkey'
import { gatedStore } from './held-store'
import { createGate, type Gate } from './holds'

/**
 * Build `version`: content-hashed chunks, an `index.html` and a `fed-mods.json` that names every
 * file of the build (so a checker can tell a complete build from a mixed one). `index.html` and the
 * entrypoint keep their names from build to build: a flat store rewrites them in place.
 */
export function buildOf(version: string, chunks = 6): Record<string, string> {
  const files: Record<string, string> = { 'index.html': `<!doctype html><title>${version}</title>` }
  for (let i = 0; i < chunks; i++) files[`js/chunk-${i}.${version}.js`] = `console.log(${JSON.stringify(`${version} ${i}`)})`
  return { ...files, 'fed-mods.json': JSON.stringify({ version, files: Object.keys(files) }) }
}

/** One real store and the app the actors share, with the builds they push. */
export interface World {
  kind: StoreKind
  app: string
  /** As the CLI is given it (`--store`), and the environment it needs. */
  url: string
  env: Record<string, string>
  builds: Map<string, Record<string, string>>
  /** Every key of the app with its bytes, sorted: what a test compares before and after. */
  contents(): Promise<[string, string][]>
  /** A client of its own for one actor, its requests passing `gate` (a gate that holds nothing when left out). */
  open(gate?: Gate): Promise<Store>
  close(): Promise<void>
}

export async function createWorld(kind: StoreKind): Promise<World> {
  const underTest = await storeUnderTest(kind)
  const app = uniqueApp()
  const clients: Store[] = []
  return {
    kind,
    app,
    url: underTest.url,
    env: underTest.env,
    builds: new Map(),
    async contents() {
      const store = await underTest.open()
      clients.push(store)
      const keys = await underTest.keys(app)
      return Promise.all(keys.map(async (key): Promise<[string, string]> => [key, (await readAll((await store.read(key))!)).toString('base64')]))
    },
    async open(gate = createGate()) {
      const store = await underTest.open()
      clients.push(store)
      return gatedStore(store, app, gate)
    },
    async close() {
      await Promise.all(clients.splice(0).map((store) => store.close().catch(() => {})))
      await underTest.close()
    },
  }
}

/** Pushes build `version` at `timestamp` as the plugin would, through `gate`, holding its writer lock for `writerLock`. */
export async function pushBuild(world: World, version: string, timestamp: number, gate?: Gate, writerLock?: WriterLockTiming) {
  const files = buildOf(version)
  world.builds.set(version, files)
  const store = await world.open(gate)
  return populate({
    store,
    options: resolveOptions({ app: world.app, store: 'unused', timestamp, retries: 1 }, {}),
    files: await collectFiles(await writeTree(await tempDir(), files)),
    writerLock,
  })
}

export async function popInto(world: World, dest: string, gate?: Gate) {
  return pop({ store: await world.open(gate), app: world.app, dest, retries: 1 })
}

/** `watch --once`: one catch-up, which throws when it fails. */
export async function watchOnce(world: World, dest: string, gate?: Gate) {
  return watch({ createStore: () => world.open(gate), app: world.app, dest, once: true, retries: 1 })
}

/** `prune --keep <keep> --older-than 0s`, as of a moment far ahead. */
export async function pruneKeeping(world: World, keep: number, gate?: Gate) {
  return prune({
    store: await world.open(gate),
    app: world.app,
    rule: { now: 4_000_000_000, olderThanSeconds: 0, keep },
    entrypoints: ['fed-mods.json'],
    retries: 1,
  })
}
