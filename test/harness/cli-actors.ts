import { type ChildProcess, spawn } from 'node:child_process'
import { utimes } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readAll } from '../../src/core/store/builds'
import { layoutOf } from '../../src/core/store/layout'
import { CLI } from '../helpers/cli'
import { tempDir, writeTree } from '../helpers/fs'
import { s3StoreOptions } from '../helpers/s3'
import { valkeyEnv } from '../helpers/valkey'
import { buildOf, type World } from './actors'
import { startHoldProxy } from './hold-proxy'
import { createGate, type Gate, keyKind, type Operation } from './holds'
import { startRespProxy } from './resp-proxy'

/**
 * The built CLI as an actor in another process, every request of it passing a gate in this one: S3
 * through the hold proxy, Valkey through the RESP proxy, the local store through `fs-gate.mjs`
 * (its requests are file system calls) and a gate server here. So a CLI push or prune can be held,
 * failed, or killed -9 at any of its request types, on every store.
 */
export interface CliRoute {
  /** What the requests pass now; set a fresh one per run. */
  gate: Gate
  /** `--store` for the CLI. */
  store: string
  env: Record<string, string>
  /** Node's own arguments (the local store's preload). */
  nodeArgs: string[]
  close(): Promise<void>
}

const FS_GATE = fileURLToPath(new URL('./fs-gate.mjs', import.meta.url))

/** An HTTP server that runs each request `fs-gate.mjs` reports through `route.gate`: 200 to go on, 503 for an injected failure. */
async function startGateServer(app: string, route: { gate: Gate }): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    let body = ''
    for await (const chunk of req) body += chunk
    const { operation, key, phase } = JSON.parse(body) as { operation: Operation; key: string; phase: 'before' | 'after' }
    try {
      await route.gate.pass(`${operation}:${keyKind(key, app, 'flat')}`, phase)
      res.end()
    } catch (error) {
      res.writeHead(503).end((error as Error).message)
    }
  })
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections()
      await new Promise((closed) => server.close(closed))
    },
  }
}

/** A route whose gate is the proxy's own: setting the route's gate sets the proxy's. */
function throughProxy(proxy: { gate: Gate }, store: string, env: Record<string, string>, close: () => Promise<void>): CliRoute {
  return {
    get gate() {
      return proxy.gate
    },
    set gate(gate) {
      proxy.gate = gate
    },
    store,
    env,
    nodeArgs: [],
    close,
  }
}

/** A route for CLI actors of `world`, with a gate that holds nothing until one is set. */
export async function routeCli(world: World): Promise<CliRoute> {
  if (world.kind === 's3') {
    const proxy = await startHoldProxy(s3StoreOptions().endpoint!, world.app)
    return throughProxy(proxy, world.url, { ...world.env, AWS_ENDPOINT_URL_S3: proxy.endpoint }, async () => proxy.gate.releaseAll())
  }
  if (world.kind === 'valkey') {
    const proxy = await startRespProxy(valkeyEnv().standalone, world.app)
    return throughProxy(proxy, proxy.url, world.env, () => proxy.close())
  }
  const route = { gate: createGate() }
  const server = await startGateServer(world.app, route)
  return Object.assign(route, {
    store: world.url,
    env: { ...world.env, HARNESS_FS_ROOT: world.url, HARNESS_GATE_URL: server.url },
    nodeArgs: ['--import', FS_GATE],
    async close() {
      route.gate.releaseAll()
      await server.close()
    },
  })
}

/** A CLI actor running: kill it with `child.kill('SIGKILL')`; `exited` gives its exit code or signal. */
export interface CliRun {
  child: ChildProcess
  exited: Promise<number | string>
  stderr(): string
}

function spawnCli(route: CliRoute, args: readonly string[]): CliRun {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...route.env }
  const child = spawn(process.execPath, [...route.nodeArgs, CLI, ...args, '--store', route.store], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)))
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code ?? -1)))
  return { child, exited, stderr: () => stderr }
}

/** `push-cache populate` of build `version` at `timestamp`; resolves once it exited, throwing unless it exited 0. */
export async function cliPush(world: World, route: CliRoute, version: string, timestamp: number, started?: (run: CliRun) => void): Promise<void> {
  const files = buildOf(version)
  world.builds.set(version, files)
  const dir = await writeTree(await tempDir(), files)
  await awaitRun(spawnCli(route, ['populate', dir, '--app', world.app, '--timestamp', String(timestamp), '--retries', '1']), started)
}

/** `push-cache prune --keep <keep> --older-than 0s`. */
export async function cliPrune(world: World, route: CliRoute, keep: number, started?: (run: CliRun) => void): Promise<void> {
  await awaitRun(spawnCli(route, ['prune', '--app', world.app, '--keep', String(keep), '--older-than', '0s', '--retries', '1']), started)
}

async function awaitRun(run: CliRun, started?: (run: CliRun) => void): Promise<void> {
  started?.(run)
  const code = await run.exited
  if (code !== 0) throw new Error(`exited with ${code}: ${run.stderr().trim().split('\n').at(-1)}`)
}

/** How far past its expiry a dead writer's lock must be before the next writer takes it over (writer-lock.ts: 30 s of clock margin). */
const PAST_EXPIRY_MS = 60_000

/**
 * The store as it is once a killed writer's lock has expired, without waiting its 150 s: what time
 * alone would change, nothing more. On a flat store the lock's body says when it expires (the next
 * writer takes it over by compare-and-swap) and a compare-and-swap guard left on a local store
 * goes stale after 10 s; on Valkey the server expires the key itself.
 */
export async function expireWriterLock(world: World): Promise<void> {
  const store = await world.open()
  const key = `${layoutOf(store).leasePrefix(world.app)}writer`
  if (world.kind === 'valkey') return void (await store.delete([key]))
  if (world.kind === 'local') {
    const old = new Date(Date.now() - PAST_EXPIRY_MS)
    await utimes(join(world.url, `${key}.guard.tmp`), old, old).catch(() => {})
  }
  const body = await store.read(key)
  if (!body) return
  const lock = JSON.parse((await readAll(body)).toString('utf8')) as { owner: string; expiresAt: number }
  await store.put(key, Buffer.from(JSON.stringify({ ...lock, expiresAt: Date.now() - PAST_EXPIRY_MS })), { contentType: 'application/json' })
}
