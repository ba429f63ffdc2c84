import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Cluster, Redis } from 'iovalkey'
import { afterAll, inject } from 'vitest'
import { collectFiles } from '../../src/core/files'
import { type Options, resolveOptions } from '../../src/core/options'
import { type PopulateInput, populate } from '../../src/core/populate'
import type { Store } from '../../src/core/store'
import type { ValkeyEnv } from '../setup/valkey-server'

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

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'push-cache-valkey-'))
}

/** A build's output directory with these files. */
export async function fixture(files: Record<string, string | Uint8Array>): Promise<string> {
  const root = await tempDir()
  for (const [relpath, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, relpath)), { recursive: true })
    await writeFile(join(root, relpath), content)
  }
  return root
}

/** Pushes `outDir` as build `timestamp` of `app`, the way the plugin does. */
export async function push(store: Store, outDir: string, options: Options & { app: string; timestamp: number }, input: Partial<PopulateInput> = {}) {
  return populate({ store, options: resolveOptions(options, {}), files: await collectFiles(outDir), ...input })
}

/** Every file under `root` with its text, keyed by relpath. */
export async function readTree(root: string): Promise<Record<string, string>> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true })
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name))
  return Object.fromEntries(await Promise.all(files.map(async (path) => [path.slice(root.length + 1), await readFile(path, 'utf8')])))
}

/** Every key of `app` on the server (data, manifest and lock), sorted. */
export async function appKeys(client: Redis | Cluster, app: string): Promise<string[]> {
  await client.ping() // a cluster knows its masters once ready
  const nodes = client instanceof Cluster ? client.nodes('master') : [client]
  const keys = await Promise.all(nodes.flatMap((node) => ['data', 'manifest', 'lock'].map((kind) => node.keys(`${kind}:${app}:*`))))
  return keys.flat().sort()
}
