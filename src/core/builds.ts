import type { Readable } from 'node:stream'
import { forEachLimited, withRetry } from './concurrency'
import { layoutOf, versionedLayout } from './layout'
import { type Manifest, parseManifest } from './manifest'
import type { Store } from './store'

const MANIFEST_READS = 8

/** One build of an app found in a store. */
export interface StoredBuild {
  timestamp: number
  /** The manifest's key; undefined for a valpop Valkey build found only by its data keys. */
  manifestKey?: string
  files: string[]
  manifest?: Manifest
  /** False while a versioned build is still being written (its lock key exists). */
  complete: boolean
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.from(chunk))
  return Buffer.concat(chunks)
}

async function readText(store: Store, key: string, retries = 3): Promise<string | undefined> {
  return withRetry(
    async () => {
      const stream = await store.read(key)
      return stream && (await readAll(stream)).toString('utf8')
    },
    { retries },
  )
}

export async function listKeys(store: Store, prefix: string): Promise<string[]> {
  const keys: string[] = []
  for await (const entry of store.list(prefix)) keys.push(entry.key)
  return keys
}

/**
 * Every build of `app`, newest first, each with its manifest. A manifest that cannot be read
 * throws `MANIFEST_UNREADABLE`: callers that delete must never guess what it protected.
 *
 * Versioned stores list manifests and locks, not data. Only when an app has no manifest at all
 * (written by valpop alone) are its data keys scanned to find the builds.
 */
export async function listBuilds(store: Store, app: string, retries = 3): Promise<StoredBuild[]> {
  const layout = layoutOf(store.layout)
  const manifestKeys = await listKeys(store, layout.manifestPrefix(app))
  const builds: StoredBuild[] = []
  // An app with months of builds has hundreds of manifests: read them a few at a time, not one by one.
  await forEachLimited(manifestKeys, MANIFEST_READS, async (key) => {
    const timestamp = layout.parseManifestKey(app, key)
    if (timestamp === undefined) return
    const text = await readText(store, key, retries)
    if (text === undefined) return // deleted since it was listed
    const manifest = parseManifest(text, key, timestamp)
    builds.push({ timestamp, manifestKey: key, files: manifest.files, manifest, complete: true })
  })
  if (store.layout === 'versioned') {
    const locked = new Set((await listKeys(store, versionedLayout.lockPrefix(app))).map((key) => Number(key.slice(versionedLayout.lockPrefix(app).length))))
    if (builds.length === 0) builds.push(...(await scanVersionedBuilds(store, app)))
    for (const build of builds) build.complete = !locked.has(build.timestamp)
  }
  return builds.sort((a, b) => b.timestamp - a.timestamp)
}

async function scanVersionedBuilds(store: Store, app: string): Promise<StoredBuild[]> {
  const byTimestamp = new Map<number, string[]>()
  for (const key of await listKeys(store, versionedLayout.dataPrefix(app))) {
    const parsed = versionedLayout.parseDataKey(app, key)
    if (parsed?.timestamp === undefined) continue
    const files = byTimestamp.get(parsed.timestamp) ?? []
    files.push(parsed.relpath)
    byTimestamp.set(parsed.timestamp, files)
  }
  return [...byTimestamp].map(([timestamp, files]) => ({ timestamp, files: files.sort(), complete: true }))
}
