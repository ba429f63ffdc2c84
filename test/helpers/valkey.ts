import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { Cluster, Redis } from 'iovalkey'
import { afterAll, inject } from 'vitest'
import { collectFiles } from '../../src/core/push/collect-files'
import { type PopulateInput, populate } from '../../src/core/push/populate'
import type { Store } from '../../src/core/store/store'
import { type Options, resolveOptions } from '../../src/options'
import { indexOf } from '../../src/stores/valkey-index'
import type { ValkeyEnv } from '../setup/valkey-server'
import { tempDir, writeTree } from './fs'

export { readTree, tempDir } from './fs'

/** The servers test/setup/valkey-server.ts started. */
export const valkeyEnv = (): ValkeyEnv => inject('valkey')

export function valkeyUrl(db?: number): string {
  const { host, port } = valkeyEnv().standalone
  return `valkey://${host}:${port}${db ? `/${db}` : ''}`
}

export const clusterUrl = (): string =>
  `valkey+cluster://${valkeyEnv()
    .cluster.map(({ host, port }) => `${host}:${port}`)
    .join(',')}`

/** Plain clients for assertions on what reached the servers; closed after the file's tests. */
export const rawClient = (): Redis => closedAfterAll(new Redis(valkeyEnv().standalone))
export const rawCluster = (): Cluster => closedAfterAll(new Cluster(valkeyEnv().cluster))

/** A client of the TLS-only server that trusts the setup's CA explicitly (not through NODE_EXTRA_CA_CERTS). */
export async function rawTlsClient(): Promise<Redis> {
  const { host, port, password, ca } = valkeyEnv().tls
  return closedAfterAll(new Redis({ host, port, password, tls: { ca: await readFile(ca) } }))
}

/** A client of the password-protected cluster. */
export function rawAuthCluster(): Cluster {
  const { nodes, password } = valkeyEnv().authCluster
  return closedAfterAll(new Cluster(nodes, { redisOptions: { password } }))
}

function closedAfterAll<T extends Redis | Cluster>(client: T): T {
  afterAll(() => client.disconnect())
  return client
}

/** An app name no other test uses, so tests share a server without seeing each other's keys. */
export const uniqueApp = (): string => `app-${randomBytes(4).toString('hex')}`

/** A build's output directory with these files. */
export const fixture = async (files: Record<string, string | Uint8Array>): Promise<string> => writeTree(await tempDir(), files)

/** Pushes `outDir` as build `timestamp` of `app`, the way the plugin does. */
export async function push(store: Store, outDir: string, options: Options & { app: string; timestamp: number }, input: Partial<PopulateInput> = {}) {
  return populate({ store, options: resolveOptions(options, {}), files: await collectFiles(outDir), ...input })
}

/** Every key of `app` on the server (data, manifest and lock), sorted. */
export async function appKeys(client: Redis | Cluster, app: string): Promise<string[]> {
  await client.ping() // a cluster knows its masters once ready
  const nodes = client instanceof Cluster ? client.nodes('master') : [client]
  const keys = await Promise.all(nodes.flatMap((node) => ['data', 'manifest', 'lock'].map((kind) => node.keys(`${kind}:${app}:*`))))
  return keys.flat().sort()
}

/** `count` chunks whose content is `version`: a build big enough to spread over every cluster master. */
export const assets = (count: number, version: string): Record<string, string> =>
  Object.fromEntries(Array.from({ length: count }, (_, i) => [`js/chunk-${i}.js`, version]))

/**
 * Writes `key` as valpop (or anyone but push-cache) does, and indexes it as the one-time adoption
 * would have found it: an undated entry, so that a store listing the app's index sees the key.
 */
export async function plantKey(client: Redis | Cluster, key: string, body: string | Uint8Array): Promise<void> {
  await client.set(key, Buffer.from(body))
  const at = indexOf(key)
  // https://valkey.io/commands/zadd/ NX: an entry push-cache wrote keeps its date.
  if (at) await client.zadd(at.index, 'NX', 0, key)
}
