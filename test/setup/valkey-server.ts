import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import type { TestProject } from 'vitest/node'

export interface ValkeyNode {
  host: string
  port: number
}

export interface ValkeyEnv {
  /** A plain server. */
  standalone: ValkeyNode
  /** The three masters of a cluster (no replicas). */
  cluster: ValkeyNode[]
}

declare module 'vitest' {
  export interface ProvidedContext {
    valkey: ValkeyEnv
  }
}

const HOST = '127.0.0.1'
const run = promisify(execFile)

/**
 * Starts a real `redis-server` and a real 3-master Redis Cluster on free loopback ports, each in its
 * own temporary directory with its log there, and stops them after the run.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  await run('redis-server', ['--version']).catch(() => {
    throw new Error('redis-server is not installed; the Valkey tests need it: apt-get install -y redis-server')
  })
  const dir = await mkdtemp(join(tmpdir(), 'push-cache-valkey-'))
  const servers: ChildProcess[] = []
  const stop = async () => {
    await Promise.all(servers.map((server) => new Promise((resolve) => (server.exitCode === null ? server.once('exit', resolve).kill() : resolve(undefined)))))
    await rm(dir, { recursive: true, force: true })
  }
  try {
    // One port per server, plus a cluster bus port per cluster node.
    const [standalone, ...ports] = await freePorts(7)
    const cluster = [0, 1, 2].map((i) => ({ port: ports[i]!, busPort: ports[i + 3]! }))
    await Promise.all([
      startRedis(dir, standalone!, servers),
      ...cluster.map(({ port, busPort }) =>
        startRedis(dir, port, servers, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '2000',
        ]),
      ),
    ])
    await run('redis-cli', ['--cluster', 'create', ...cluster.map(({ port }) => `${HOST}:${port}`), '--cluster-replicas', '0', '--cluster-yes'])
    await waitFor('cluster_state:ok on every node', async () => {
      const infos = await Promise.all(cluster.map(({ port }) => cli(port, 'cluster', 'info')))
      return infos.every((info) => info.includes('cluster_state:ok'))
    })
    project.provide('valkey', { standalone: { host: HOST, port: standalone! }, cluster: cluster.map(({ port }) => ({ host: HOST, port })) })
  } catch (error) {
    await stop()
    throw error
  }
  return stop
}

/** A `redis-server` on `port` with no persistence, its files and log in `dir`; resolves once it answers. Also for tests that kill one. */
export async function startRedis(dir: string, port: number, started: ChildProcess[] = [], extra: string[] = []): Promise<ChildProcess> {
  const log = join(dir, `redis-${port}.log`)
  const server = spawn(
    'redis-server',
    ['--bind', HOST, '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `redis-${port}.rdb`, '--logfile', log, ...extra],
    { stdio: 'ignore' },
  )
  started.push(server)
  await waitFor(`redis-server on port ${port} (log: ${log})`, async () => (await cli(port, 'ping')) === 'PONG')
  return server
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', HOST, '-p', String(port), ...args]).catch(() => ({ stdout: '' }))
  return stdout.trim()
}

async function waitFor(what: string, ready: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** Ports the kernel handed out at once, so they are distinct; released just before the servers take them. */
export async function freePorts(count: number): Promise<number[]> {
  const listeners = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer()
          server.once('error', reject).listen(0, HOST, () => resolve(server))
        }),
    ),
  )
  const ports = listeners.map((server) => (server.address() as { port: number }).port)
  await Promise.all(listeners.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}
