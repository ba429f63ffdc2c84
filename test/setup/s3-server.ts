import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestProject } from 'vitest/node'

/**
 * A real S3 server on loopback for the whole run, behind a recording proxy that tests talk to:
 * `PUSH_CACHE_TEST_S3` (e.g. `http://user:pass@127.0.0.1:9000`, a MinIO), else moto_server,
 * else the npm s3rver.
 */
export interface S3TestEnv {
  server: 'external' | 'moto' | 's3rver'
  /** The recording proxy: what stores under test use. */
  endpoint: string
  /** The server itself: what helpers use to plant and inspect objects, unrecorded and without faults. */
  upstream: string
  /** Where tests read the request log and set faults (`/log`, `/faults`). */
  control: string
  region: string
  credentials: { accessKeyId: string; secretAccessKey: string }
  /** s3rver rejects the SDK's default CRC32 checksums: for the tests' own SDK client. */
  checksums?: 'when_required'
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3TestEnv
  }
}

/** One request the proxy saw; times are milliseconds on the proxy's monotonic clock. */
export interface RecordedRequest {
  bucket: string
  /** The decoded object key; `''` for a request on the bucket itself. */
  key: string
  /** The raw query string (`?uploads`, `?partNumber=2&uploadId=…`). */
  query: string
  method: string
  start: number
  /** When the response was sent, or the socket closed; `NaN` while in flight. */
  end: number
  /** 0 while in flight or when the socket was reset. */
  status: number
  /** The region the request was signed for (from its `Authorization` header). */
  region?: string
}

/** Answer matching requests with `status` (or reset their socket) instead of forwarding them. */
export interface FaultRule {
  /** The test file that set it: `DELETE /faults?owner=` clears only its own. */
  owner: string
  bucket: string
  method?: string
  /** Exact key. */
  key?: string
  /** Regular expression source tested against the key. */
  keyPattern?: string
  status?: number
  /** The S3 error code of the answer (`SlowDown`, `InternalError`); by default `ServiceUnavailable` for a 503. */
  code?: string
  /** Sent as `x-amz-bucket-region`, as S3 does when a bucket is asked for in the wrong region. */
  bucketRegion?: string
  reset?: boolean
  /** Matches left; unset = every time. */
  times?: number
}

interface Backend {
  server: S3TestEnv['server']
  endpoint: URL
  credentials: S3TestEnv['credentials']
  checksums?: 'when_required'
  stop(): Promise<void>
}

const LOOPBACK = '127.0.0.1'
const STARTUP_TIMEOUT_MS = 30_000

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // The SDK warns once per process that it will need Node 22 from 2027; workers inherit this env.
  // https://github.com/aws/aws-sdk-js-v3/issues/7983
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
  const backend = await startBackend()
  const requests: RecordedRequest[] = []
  const faults: FaultRule[] = []
  const proxy = await listen(createRecordingProxy(backend.endpoint, requests, faults))
  const control = await listen(createControlServer(requests, faults))
  project.provide('s3', {
    server: backend.server,
    endpoint: `http://${LOOPBACK}:${proxy.port}`,
    upstream: backend.endpoint.origin,
    control: `http://${LOOPBACK}:${control.port}`,
    region: process.env.AWS_REGION || 'us-east-1',
    credentials: backend.credentials,
    checksums: backend.checksums,
  })
  return async () => {
    await Promise.all([proxy.close(), control.close()])
    await backend.stop()
  }
}

async function startBackend(): Promise<Backend> {
  const external = process.env.PUSH_CACHE_TEST_S3
  if (external) {
    const url = new URL(external)
    const credentials = {
      accessKeyId: decodeURIComponent(url.username) || process.env.AWS_ACCESS_KEY_ID || '',
      secretAccessKey: decodeURIComponent(url.password) || process.env.AWS_SECRET_ACCESS_KEY || '',
    }
    url.username = url.password = ''
    const checksums = process.env.PUSH_CACHE_S3_CHECKSUMS === 'when_required' ? 'when_required' : undefined
    return { server: 'external', endpoint: url, credentials, checksums, stop: async () => {} }
  }
  const failures: string[] = []
  for (const command of [['moto_server'], ['python3', '-m', 'moto.server']]) {
    try {
      return await startMoto(command)
    } catch (error) {
      failures.push(`${command.join(' ')}: ${(error as Error).message}`)
    }
  }
  try {
    return await startS3rver()
  } catch (error) {
    failures.push(`s3rver: ${(error as Error).message}`)
    throw new Error(
      `No S3 server for the tests. Install moto (pip install 'moto[server]'), or set PUSH_CACHE_TEST_S3=http://user:pass@127.0.0.1:9000.\n${failures.join('\n')}`,
    )
  }
}

async function startMoto([command, ...args]: string[]): Promise<Backend> {
  const port = await freePort()
  // Its log goes nowhere but into the error of a failed start.
  const child = spawn(command!, [...args, '-H', LOOPBACK, '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000)
  })
  const endpoint = new URL(`http://${LOOPBACK}:${port}`)
  try {
    await waitUntilAnswering(endpoint, child)
  } catch (error) {
    child.kill()
    throw new Error(`${(error as Error).message}${stderr ? `\n${stderr.trim()}` : ''}`)
  }
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return {
    server: 'moto',
    endpoint,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    async stop() {
      child.kill()
      await exited
    },
  }
}

async function startS3rver(): Promise<Backend> {
  const { default: S3rver } = await import('s3rver')
  const directory = await mkdtemp(join(tmpdir(), 'push-cache-s3rver-'))
  const server = new S3rver({ address: LOOPBACK, port: 0, silent: true, directory })
  const { port } = await server.run()
  return {
    server: 's3rver',
    endpoint: new URL(`http://${LOOPBACK}:${port}`),
    // s3rver's built-in account.
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    checksums: 'when_required',
    async stop() {
      await server.close()
      await rm(directory, { recursive: true, force: true })
    },
  }
}

async function waitUntilAnswering(endpoint: URL, child: ChildProcess): Promise<void> {
  let exit: string | undefined
  child.once('error', (error) => (exit = error.message))
  child.once('exit', (code) => (exit ??= `exited with code ${code}`))
  const deadline = Date.now() + STARTUP_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (exit) throw new Error(exit)
    const answered = await fetch(endpoint).then(
      () => true,
      () => false,
    )
    if (answered) return
    await sleep(100)
  }
  throw new Error(`did not answer on ${endpoint.origin} within ${STARTUP_TIMEOUT_MS / 1000} s`)
}

async function freePort(): Promise<number> {
  const { port, close } = await listen(http.createServer())
  await close()
  return port
}

async function listen(server: http.Server): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, LOOPBACK, resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** Path-style `/bucket/key?query` → its parts, decoded. */
function parseRequestPath(url: string): Pick<RecordedRequest, 'bucket' | 'key' | 'query'> {
  const { pathname, search } = new URL(url, 'http://proxy')
  const [, bucket = '', ...key] = pathname.split('/')
  return { bucket: decodeURIComponent(bucket), key: decodeURIComponent(key.join('/')), query: search }
}

function matchingFault(faults: FaultRule[], request: RecordedRequest): FaultRule | undefined {
  const index = faults.findIndex(
    (rule) =>
      rule.bucket === request.bucket &&
      (rule.method === undefined || rule.method.toUpperCase() === request.method) &&
      (rule.key === undefined || rule.key === request.key) &&
      (rule.keyPattern === undefined || new RegExp(rule.keyPattern).test(request.key)),
  )
  const rule = faults[index]
  if (rule?.times !== undefined && --rule.times <= 0) faults.splice(index, 1)
  return rule
}

function createRecordingProxy(upstream: URL, requests: RecordedRequest[], faults: FaultRule[]): http.Server {
  const transport = upstream.protocol === 'https:' ? https : http
  const agent = new transport.Agent({ keepAlive: true })
  return http.createServer((req, res) => {
    const request: RecordedRequest = {
      ...parseRequestPath(req.url ?? '/'),
      method: req.method ?? 'GET',
      start: performance.now(),
      end: Number.NaN,
      status: 0,
      region: /Credential=[^/]+\/\d+\/([^/]+)\//.exec(req.headers.authorization ?? '')?.[1],
    }
    requests.push(request)
    res.once('close', () => {
      request.end = performance.now()
      request.status = res.headersSent ? res.statusCode : 0
    })
    const fault = matchingFault(faults, request)
    if (fault?.reset) {
      req.socket.resetAndDestroy()
      return
    }
    if (fault) {
      // Read the whole body first, as a server would, so the client sees the answer and not a broken pipe.
      req.resume().once('end', () => {
        const status = fault.status ?? 503
        const code = fault.code ?? (status === 503 ? 'ServiceUnavailable' : 'InjectedFault')
        res.writeHead(status, { 'content-type': 'application/xml', ...(fault.bucketRegion ? { 'x-amz-bucket-region': fault.bucketRegion } : {}) })
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>Fault injected by the test proxy</Message></Error>`)
      })
      return
    }
    // Forwarded unchanged, Host included: the client's signature covers it.
    const forwarded = transport.request(
      { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    forwarded.once('error', () => res.destroy())
    req.pipe(forwarded)
  })
}

function createControlServer(requests: RecordedRequest[], faults: FaultRule[]): http.Server {
  return http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://control')
    const reply = (status: number, body?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(body === undefined ? '' : JSON.stringify(body))
    }
    if (req.method === 'GET' && url.pathname === '/log') {
      const bucket = url.searchParams.get('bucket')
      return reply(
        200,
        requests.filter((request) => request.bucket === bucket),
      )
    }
    if (req.method === 'POST' && url.pathname === '/faults') {
      let body = ''
      for await (const chunk of req) body += chunk
      faults.push(JSON.parse(body) as FaultRule)
      return reply(204)
    }
    if (req.method === 'DELETE' && url.pathname === '/faults') {
      const owner = url.searchParams.get('owner')
      faults.splice(0, faults.length, ...faults.filter((rule) => rule.owner !== owner))
      return reply(204)
    }
    reply(404, { error: `no route ${req.method} ${url.pathname}` })
  })
}
