import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
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
  /** A server that speaks TLS only (no plain port) and wants `password`; its certificate is for 127.0.0.1 and localhost, signed by the CA in the PEM file `ca`. */
  tls: ValkeyNode & { password: string; ca: string }
  /** Three more masters of a cluster, each with `requirepass` and `masterauth` set to `password`. */
  authCluster: { nodes: ValkeyNode[]; password: string }
}

/** How to reach a server: its password, and for TLS the files of its certificate. */
export interface Access {
  password?: string
  tls?: TlsFiles
}

interface TlsFiles {
  ca: string
  cert: string
  key: string
}

declare module 'vitest' {
  export interface ProvidedContext {
    valkey: ValkeyEnv
  }
}

const HOST = '127.0.0.1'
const run = promisify(execFile)

/**
 * Starts on free loopback ports, all in parallel: a real `redis-server`, a real 3-master Redis
 * Cluster, a TLS-only `redis-server` with a password (certificates from a throwaway CA made here)
 * and a second 3-master cluster with a password. Their files and logs go to one temporary
 * directory; they are stopped after the run.
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
    const [standalone, tlsPort, ...ports] = await freePorts(14)
    const clusterNodes = (offset: number) => [0, 1, 2].map((i) => ({ port: ports[offset + i]!, busPort: ports[offset + i + 3]! }))
    const cluster = clusterNodes(0)
    const authCluster = clusterNodes(6)
    const authAccess = { password: randomBytes(12).toString('hex') }
    const tlsAccess = { password: randomBytes(12).toString('hex'), tls: await makeCertificates(dir) }
    // The plain cluster and the password-protected one form side by side: `--cluster create` alone takes about 2 s.
    await Promise.all([
      startRedis(dir, standalone!, servers),
      startRedis(dir, tlsPort!, servers, [], tlsAccess),
      startCluster(dir, cluster, servers),
      startCluster(dir, authCluster, servers, authAccess),
    ])
    project.provide('valkey', {
      standalone: { host: HOST, port: standalone! },
      cluster: cluster.map(({ port }) => ({ host: HOST, port })),
      tls: { host: HOST, port: tlsPort!, password: tlsAccess.password, ca: tlsAccess.tls.ca },
      authCluster: { nodes: authCluster.map(({ port }) => ({ host: HOST, port })), password: authAccess.password },
    })
  } catch (error) {
    await stop()
    throw error
  }
  return stop
}

/** A Redis Cluster of these masters (no replicas), ready once every node says `cluster_state:ok`. */
export async function startCluster(dir: string, nodes: { port: number; busPort: number }[], started: ChildProcess[], access: Access = {}): Promise<void> {
  await Promise.all(
    nodes.map(({ port, busPort }) =>
      startRedis(
        dir,
        port,
        started,
        [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '2000',
        ],
        access,
      ),
    ),
  )
  await run('redis-cli', ['--cluster', 'create', ...nodes.map(({ port }) => `${HOST}:${port}`), '--cluster-replicas', '0', '--cluster-yes'], {
    env: cliEnv(access),
  })
  await waitFor(`cluster_state:ok on every node of ${nodes.map(({ port }) => port).join(',')}`, async () => {
    const infos = await Promise.all(nodes.map(({ port }) => cli(port, access, 'cluster', 'info')))
    return infos.every((info) => info.includes('cluster_state:ok'))
  })
}

/** A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost (EC P-256: a few ms each), in `dir`. */
async function makeCertificates(dir: string): Promise<TlsFiles> {
  const [ca, caKey, cert, key, csr] = ['ca.crt', 'ca.key', 'server.crt', 'server.key', 'server.csr'].map((name) => join(dir, name)) as [
    string,
    string,
    string,
    string,
    string,
  ]
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  await run('openssl', [
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    caKey,
    '-out',
    ca,
    '-days',
    '2',
    '-subj',
    '/CN=push-cache test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ])
  await run('openssl', ['req', ...newKey, '-keyout', key, '-out', csr, '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'])
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-days', '2', '-copy_extensions', 'copy', '-out', cert])
  return { ca, cert, key }
}

/**
 * A `redis-server` on `port` with no persistence, its files and log in `dir`; resolves once it answers. Also for tests that kill one.
 * With `access.tls` it listens on `port` for TLS only (no plain port) and does not ask clients for certificates.
 */
export async function startRedis(dir: string, port: number, started: ChildProcess[] = [], extra: string[] = [], access: Access = {}): Promise<ChildProcess> {
  const log = join(dir, `redis-${port}.log`)
  const { password, tls } = access
  const listen = tls
    ? [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--tls-cert-file',
        tls.cert,
        '--tls-key-file',
        tls.key,
        '--tls-ca-cert-file',
        tls.ca,
        '--tls-auth-clients',
        'no',
      ]
    : ['--port', String(port)]
  const server = spawn(
    'redis-server',
    [
      '--bind',
      HOST,
      ...listen,
      ...(password ? ['--requirepass', password, '--masterauth', password] : []),
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--dbfilename',
      `redis-${port}.rdb`,
      '--logfile',
      log,
      ...extra,
    ],
    { stdio: 'ignore' },
  )
  started.push(server)
  await waitFor(`redis-server on port ${port} (log: ${log})`, async () => (await cli(port, access, 'ping')) === 'PONG')
  return server
}

/** redis-cli takes the password from the environment: no warning, and not on a command line. */
const cliEnv = ({ password }: Access): NodeJS.ProcessEnv => ({ ...process.env, REDISCLI_AUTH: password })

async function cli(port: number, access: Access, ...args: string[]): Promise<string> {
  const tls = access.tls ? ['--tls', '--cacert', access.tls.ca] : []
  const { stdout } = await run('redis-cli', ['-h', HOST, '-p', String(port), ...tls, ...args], { env: cliEnv(access) }).catch(() => ({ stdout: '' }))
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
