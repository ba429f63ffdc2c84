// The bench's own servers on free 127.0.0.1 ports (moto_server for S3, redis-server for Valkey, a
// Redis Cluster for valkey-foreign) and the loopback proxies in front of them: one that adds a
// round-trip time, one that counts S3 requests.
import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { transform } from 'esbuild'

export const LOOPBACK = '127.0.0.1'
const STARTUP_TIMEOUT_MS = 30_000

/** Processes started here, for `stopAll` (also called from signal handlers). */
const started = new Set()

function listen(server, port = 0) {
  return new Promise((resolve, reject) => {
    server.once('error', reject).listen(port, LOOPBACK, () => resolve(server.address().port))
  })
}

async function freePort() {
  const server = net.createServer()
  const port = await listen(server)
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Polls `ready` until it resolves true, or fails naming `what` once the child died or the deadline passed. */
async function waitUntil(what, child, ready) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) while starting`)
    if (await ready().catch(() => false)) return
    await sleep(100)
  }
  throw new Error(`${what} did not answer within ${STARTUP_TIMEOUT_MS / 1000} s`)
}

function startProcess(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-2000)
  })
  child.once('error', () => {}) // ENOENT: `waitUntil` sees the exit
  started.add(child)
  child.once('exit', () => started.delete(child))
  return { child, stderr: () => stderr.trim() }
}

function stopper(child) {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill()
    await Promise.race([exited, sleep(5000)])
    child.kill('SIGKILL')
  }
}

/** moto_server (or `python3 -m moto.server`) on a free port; `reset()` empties it and makes `bucket` again. */
export async function startMoto(bucket) {
  const failures = []
  for (const [command, ...args] of [['moto_server'], ['python3', '-m', 'moto.server']]) {
    const port = await freePort()
    const endpoint = `http://${LOOPBACK}:${port}`
    const { child, stderr } = startProcess(command, [...args, '-H', LOOPBACK, '-p', String(port)])
    try {
      await waitUntil(command, child, async () => (await fetch(endpoint, { signal: AbortSignal.timeout(2000) })).ok)
    } catch (error) {
      failures.push(`${[command, ...args].join(' ')}: ${error.message} ${stderr()}`)
      await stopper(child)()
      continue
    }
    const call = async (method, path) => {
      const response = await fetch(`${endpoint}${path}`, { method, signal: AbortSignal.timeout(30_000) })
      if (!response.ok) throw new Error(`moto ${method} ${path}: HTTP ${response.status} ${await response.text()}`)
      return response.text()
    }
    return {
      endpoint,
      port,
      stop: stopper(child),
      // https://docs.getmoto.org/en/latest/docs/server_mode.html#reset-api
      async reset() {
        await call('POST', '/moto-api/reset')
        await call('PUT', `/${bucket}`)
      },
      /** Objects under `prefix`, counted with ListObjectsV2 straight to moto (not through the counting proxy). */
      async count(prefix) {
        let total = 0
        let token = ''
        for (let page = 0; page < 10_000; page++) {
          const xml = await call(
            'GET',
            `/${bucket}?list-type=2&prefix=${encodeURIComponent(prefix)}${token ? `&continuation-token=${encodeURIComponent(token)}` : ''}`,
          )
          total += Number(/<KeyCount>(\d+)<\/KeyCount>/.exec(xml)?.[1] ?? 0)
          token = /<NextContinuationToken>([^<]+)<\/NextContinuationToken>/.exec(xml)?.[1] ?? ''
          if (!token) return total
        }
        throw new Error(`moto: more than 10,000 pages under ${prefix}`)
      },
    }
  }
  throw new Error(`No S3 server for the bench. Install moto: pip install 'moto[server]'.\n${failures.join('\n')}`)
}

/** A RESP reply to one inline command, on a connection of its own. */
function redisCommand(port, command) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, LOOPBACK)
    let reply = ''
    socket.setTimeout(5000, () => socket.destroy(new Error(`redis-server on ${port}: no answer to ${command}`)))
    socket.once('error', reject)
    socket.on('data', (chunk) => {
      reply += chunk
      socket.end()
    })
    socket.once('close', () => resolve(reply))
    socket.write(`${command}\r\n`)
  })
}

/** redis-server without persistence on a free port, its files in `dir`. */
export async function startRedis(dir) {
  const port = await freePort()
  const { child, stderr } = startProcess('redis-server', [
    '--bind',
    LOOPBACK,
    '--port',
    String(port),
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--logfile',
    '',
    // DEBUG POPULATE fills the valkey-foreign case's server with other apps' keys in seconds.
    '--enable-debug-command',
    'local',
  ])
  try {
    await waitUntil('redis-server', child, async () => (await redisCommand(port, 'PING')).startsWith('+PONG'))
  } catch (error) {
    await stopper(child)()
    throw new Error(`${error.message}. Install it: apt-get install -y redis-server. ${stderr()}`)
  }
  return { port, stop: stopper(child) }
}

/** Kills every server still running, at once (for signal and exit handlers). */
export function killAll() {
  for (const child of started) child.kill('SIGKILL')
}

/** Pauses a direction when this many bytes wait for their delay. */
const HIGH_WATER = 16 * 1024 * 1024

/**
 * Copies `from` to `to`, each chunk `delayMs` later than it arrived, in order. Together with the
 * other direction this adds 2 × `delayMs` to every round trip, as a remote region would.
 */
function delayedPipe(from, to, delayMs) {
  const queue = []
  let queued = 0
  let timer
  let draining = false
  const flush = () => {
    timer = undefined
    while (queue.length > 0 && !draining) {
      const wait = queue[0].due - performance.now()
      if (wait > 0) {
        timer = setTimeout(flush, wait)
        return
      }
      const { chunk } = queue.shift()
      if (chunk === null) {
        to.end()
        return
      }
      queued -= chunk.length
      if (queued < HIGH_WATER && from.isPaused()) from.resume()
      if (!to.write(chunk)) {
        draining = true
        to.once('drain', () => {
          draining = false
          flush()
        })
      }
    }
  }
  const enqueue = (chunk) => {
    queue.push({ chunk, due: performance.now() + delayMs })
    if (timer === undefined && !draining) flush()
  }
  from.on('data', (chunk) => {
    queued += chunk.length
    if (queued >= HIGH_WATER) from.pause()
    enqueue(chunk)
  })
  from.once('end', () => enqueue(null))
}

/** A TCP proxy on a free port to `targetPort` that adds `rttMs` to every round trip (half each way). */
export async function startDelayProxy(targetPort, rttMs) {
  const sockets = new Set()
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    const upstream = net.connect({ port: targetPort, host: LOOPBACK, allowHalfOpen: true, noDelay: true })
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    delayedPipe(client, upstream, rttMs / 2)
    delayedPipe(upstream, client, rttMs / 2)
  })
  const port = await listen(server)
  return { port, close: () => closeServer(server, sockets) }
}

function closeServer(server, sockets) {
  for (const socket of sockets) socket.destroy()
  return new Promise((resolve) => server.close(resolve))
}

/** The S3 operation of a path-style request, from its method and query. */
function s3Operation(method, url) {
  const { pathname, searchParams: query } = new URL(url, 'http://proxy')
  const hasKey = pathname.split('/').filter(Boolean).length > 1
  if (query.has('uploads')) return 'CreateMultipartUpload'
  if (query.has('uploadId')) return { PUT: 'UploadPart', POST: 'CompleteMultipartUpload', DELETE: 'AbortMultipartUpload' }[method] ?? 'ListParts'
  if (query.has('delete')) return 'DeleteObjects'
  if (!hasKey) {
    if (method === 'GET') return query.has('location') ? 'GetBucketLocation' : query.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects'
    if (method === 'HEAD') return 'HeadBucket'
  }
  return { PUT: 'PutObject', GET: 'GetObject', HEAD: 'HeadObject', DELETE: 'DeleteObject' }[method] ?? `${method} other`
}

/**
 * An HTTP proxy on a free port to `upstreamPort` that counts requests per S3 operation.
 * `take()` returns the counts since the last call and starts again from zero.
 */
export async function startCountingProxy(upstreamPort) {
  let counts = {}
  const agent = new http.Agent({ keepAlive: true })
  const server = http.createServer((request, response) => {
    const operation = s3Operation(request.method, request.url)
    counts[operation] = (counts[operation] ?? 0) + 1
    // Node already answered `100 Continue` to the client; the header is not signed (SigV4 leaves it out).
    const { expect: _, ...headers } = request.headers
    const forwarded = http.request({ host: LOOPBACK, port: upstreamPort, method: request.method, path: request.url, headers, agent }, (answer) => {
      // moto closes every connection (`Connection: close`); passed on, every tool would pay a new
      // connection per request, which no real S3 asks. The proxy keeps the client's open.
      const { connection: __, 'keep-alive': ___, ...answerHeaders } = answer.headers
      response.writeHead(answer.statusCode ?? 502, answerHeaders)
      answer.pipe(response)
    })
    forwarded.once('error', () => response.destroy())
    request.pipe(forwarded)
  })
  // Uploads through a slow proxy may take long; the bench's per-run timeout bounds them.
  server.requestTimeout = 0
  const port = await listen(server)
  return {
    port,
    take() {
      const taken = counts
      counts = {}
      return taken
    },
    close() {
      server.closeAllConnections()
      agent.destroy()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

/**
 * A 3-master Redis Cluster (no replicas) on free ports, its files in `dir`, started by the test
 * suite's own setup (test/setup/valkey-server.ts, its types stripped by esbuild) rather than a copy of it.
 */
export async function startRedisCluster(dir) {
  const setup = join(dir, 'valkey-server.mjs')
  const source = await readFile(join(import.meta.dirname, '../../test/setup/valkey-server.ts'), 'utf8')
  await writeFile(setup, (await transform(source, { loader: 'ts', format: 'esm' })).code)
  const { freePorts, startCluster } = await import(pathToFileURL(setup).href)
  const ports = await freePorts(6)
  const nodes = [0, 1, 2].map((i) => ({ port: ports[i], busPort: ports[i + 3] }))
  const children = []
  // Tracked as the bench's other servers are, so that signal handlers stop them too.
  const tracked = {
    push(child) {
      children.push(child)
      started.add(child)
      child.once('exit', () => started.delete(child))
    },
  }
  try {
    await startCluster(dir, nodes, tracked)
  } catch (error) {
    await Promise.all(children.map((child) => stopper(child)()))
    throw error
  }
  return { ports: nodes.map(({ port }) => port), stop: () => Promise.all(children.map((child) => stopper(child)())) }
}
