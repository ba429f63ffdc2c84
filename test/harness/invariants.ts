import { createHash } from 'node:crypto'
import { readFile, realpath } from 'node:fs/promises'
import { join } from 'node:path'
import { entryOf } from '../../src/core/model/manifest'
import { readServed } from '../../src/core/serve/served-dir'
import { listBuilds, readAll } from '../../src/core/store/builds'
import { layoutOf } from '../../src/core/store/layout'
import { isServed, readPending, servedEntrypoints } from '../../src/core/store/pending'
import type { Store } from '../../src/core/store/store'
import { tree } from '../helpers/fs'

/** One broken promise of issue 16, said the way a user would see it. */
export interface Violation {
  invariant: 'I1' | 'I2' | 'I3' | 'I4'
  detail: string
}

/** Every build the actors push, by version: what each file of it must hold. */
export type Builds = ReadonlyMap<string, Readonly<Record<string, string | Uint8Array>>>

/** The build an entrypoint belongs to and the files it names (the fixture's `fed-mods.json`: `{ version, files }`). */
function parseEntrypoint(text: string): { version: string; files: string[] } | undefined {
  try {
    const value = JSON.parse(text) as { version?: unknown; files?: unknown }
    return typeof value.version === 'string' && Array.isArray(value.files) ? { version: value.version, files: value.files as string[] } : undefined
  } catch {
    return undefined
  }
}

const sameBytes = (held: Buffer, expected: string | Uint8Array | undefined) => expected !== undefined && held.equals(Buffer.from(expected))

/** I1 for one reader: every file its entrypoint names, read with `readFile`, has the bytes of the entrypoint's build. */
async function entrypointViolations(
  where: string,
  entrypoint: Buffer | undefined,
  builds: Builds,
  read: (relpath: string) => Promise<Buffer | undefined>,
): Promise<Violation[]> {
  if (entrypoint === undefined) return []
  const parsed = parseEntrypoint(entrypoint.toString('utf8'))
  const build = parsed && builds.get(parsed.version)
  if (!parsed || !build) return [{ invariant: 'I1', detail: `${where}: the entrypoint is no build's: ${entrypoint.toString('utf8').slice(0, 80)}` }]
  if (!sameBytes(entrypoint, build['fed-mods.json'])) return [{ invariant: 'I1', detail: `${where}: the entrypoint of ${parsed.version} has other bytes` }]
  const violations: Violation[] = []
  for (const relpath of parsed.files) {
    const held = await read(relpath)
    if (held === undefined) violations.push({ invariant: 'I1', detail: `${where}: ${relpath}, named by the entrypoint of ${parsed.version}, is missing` })
    else if (!sameBytes(held, build[relpath])) violations.push({ invariant: 'I1', detail: `${where}: ${relpath} is not the file of ${parsed.version}` })
  }
  return violations
}

const readIfThere = (path: string) => readFile(path).catch(() => undefined)

/**
 * I1 and I3 on a served directory: it is one of our build directories, every file its state
 * records is there with the recorded MD5 and nothing else is, and the entrypoint's files are
 * those of its build. A `dest` that does not exist serves nothing and breaks nothing.
 */
export async function destViolations(dest: string, builds: Builds): Promise<Violation[]> {
  const served = await readServed(dest)
  if (served.kind === 'none') return []
  if (served.kind !== 'build' || !served.state)
    return [{ invariant: 'I3', detail: `${dest} is ${served.kind === 'build' ? 'a build without its state' : `a ${served.kind}`}` }]
  const dir = await realpath(dest)
  const violations: Violation[] = []
  const recorded = served.state.files
  const onDisk = await tree(dir)
  for (const relpath of onDisk)
    if (!(relpath in recorded)) violations.push({ invariant: 'I3', detail: `${dest} holds ${relpath}, which its state does not record` })
  for (const [relpath, { md5 }] of Object.entries(recorded)) {
    const held = await readIfThere(join(dir, relpath))
    if (held === undefined) violations.push({ invariant: 'I3', detail: `${dest} lacks ${relpath}` })
    else if (createHash('md5').update(held).digest('hex') !== md5)
      violations.push({ invariant: 'I3', detail: `${dest}/${relpath} is not the bytes its state records` })
  }
  return [
    ...violations,
    ...(await entrypointViolations(dest, await readIfThere(join(dir, 'fed-mods.json')), builds, (relpath) => readIfThere(join(dir, relpath)))),
  ]
}

async function readKey(store: Store, key: string): Promise<Buffer | undefined> {
  const body = await store.read(key)
  return body && readAll(body)
}

/**
 * I2 and I1 on a store: every file the newest complete manifest names exists, and the entrypoint
 * a reader gets from the store (flat: the one key; versioned: the newest complete build's) names
 * files with the bytes of its build.
 */
export async function storeViolations(store: Store, app: string, builds: Builds): Promise<Violation[]> {
  const layout = layoutOf(store)
  const newest = (await listBuilds(store, app)).find((build) => build.complete)
  if (!newest) return []
  const keyOf = (relpath: string, timestamp = newest.timestamp) => layout.dataKey(app, entryOf(newest.manifest, relpath)?.version ?? timestamp, relpath)
  const violations: Violation[] = []
  for (const relpath of newest.files)
    if ((await readKey(store, keyOf(relpath))) === undefined)
      violations.push({ invariant: 'I2', detail: `${keyOf(relpath)}, named by manifest ${newest.timestamp}, is missing` })
  const entrypointKey = keyOf('fed-mods.json')
  return [
    ...violations,
    ...(await entrypointViolations(`${store.display} ${entrypointKey}`, await readKey(store, entrypointKey), builds, (relpath) =>
      readKey(store, keyOf(relpath)),
    )),
  ]
}

/**
 * What a crashed push that has not expired may still rely on, with its bytes (right after the
 * crash): on a flat store the files its pending record names once its entrypoint is served (the
 * lock it held protects the rest only until it expires); on Valkey the newest complete build's keys for those files and its own keys while its
 * `lock:<app>:<timestamp>` lives. I4 is that none of them is deleted or changed: see `lostNeeds`.
 */
export async function crashedPushNeeds(store: Store, app: string, timestamp: number): Promise<Map<string, Buffer>> {
  const layout = layoutOf(store)
  const record = (await readPending(store, app, 1)).find((pending) => pending.timestamp === timestamp)
  const served = record && isServed(record.entrypoints, await servedEntrypoints(store, app, Object.keys(record.entrypoints), 1))
  const pending = served ? record.files : []
  const keys = new Set<string>()
  if (!layout.keysPerBuild) for (const relpath of pending) keys.add(layout.dataKey(app, 0, relpath))
  else {
    const newest = (await listBuilds(store, app)).find((build) => build.complete)
    for (const relpath of pending)
      if (newest?.files.includes(relpath)) keys.add(layout.dataKey(app, entryOf(newest.manifest, relpath)?.version ?? newest.timestamp, relpath))
    if ((await readKey(store, `lock:${app}:${timestamp}`)) !== undefined)
      for await (const { key } of store.list(layout.dataKey(app, timestamp, ''))) keys.add(key)
  }
  const needs = new Map<string, Buffer>()
  for (const key of keys) {
    const bytes = await readKey(store, key)
    if (bytes) needs.set(key, bytes)
  }
  return needs
}

/**
 * I4: the keys of `needs` that are gone. A flat key rewritten since (a later push's `index.html`)
 * is not: a newer build replaces same-name files, and the crashed push would write them again.
 */
export async function lostNeeds(store: Store, needs: ReadonlyMap<string, Buffer>): Promise<Violation[]> {
  const violations: Violation[] = []
  for (const key of needs.keys())
    if ((await readKey(store, key)) === undefined)
      violations.push({ invariant: 'I4', detail: `${key}, which a crashed push that has not expired relies on, is gone` })
  return violations
}
