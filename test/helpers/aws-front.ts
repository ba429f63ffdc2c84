import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { connect } from 'node:net'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { afterAll, beforeAll } from 'vitest'
import { tempDir } from './fs'

/**
 * The regions the front answers for: `<bucket>.s3.<region>.amazonaws.com` and `s3.<region>.amazonaws.com`,
 * and their FIPS (`s3-fips`) and dual-stack (`s3.dualstack`) forms.
 */
const REGIONS = ['us-east-1', 'eu-west-1']
/** How far a request's `x-amz-date` may be from S3's clock before it answers RequestTimeTooSkewed. */
const SKEW_LIMIT_MS = 15 * 60_000

/** One request the front saw. */
interface FrontRequest {
  method: string
  host: string
  bucket: string
  key: string
  query: string
  status: number
  /** The region the request was signed for. */
  region?: string
  /** The checksum headers its body came with. */
  checksums: ('content-md5' | 'x-amz-checksum-crc32')[]
  /** Its `x-amz-content-sha256`: the body's SHA-256, or `UNSIGNED-PAYLOAD`. */
  payloadHash?: string
}

/** Answer matching requests as S3 does when it refuses them, instead of passing them on. */
interface FrontFault {
  method?: string
  /** Tested against the key. */
  key?: RegExp
  /** Tested against the raw query (`partNumber=2`). */
  query?: RegExp
  status: number
  code: string
  /** Matches left; unset = every time. */
  times?: number
}

export interface AwsFront {
  /** A PEM file that trusts the front: NODE_EXTRA_CA_CERTS for a CLI run. */
  caFile: string
  /** `http://127.0.0.1:<port>`: a CONNECT proxy that takes every `*.amazonaws.com:443` to the front. */
  proxy: string
  /** The targets of the CONNECTs the proxy was asked for, in order. */
  readonly tunnels: string[]
  readonly requests: FrontRequest[]
  fault(fault: FrontFault): void
  /** S3's clock runs this far ahead of the machine's (the machine's is behind). */
  skewClock(ms: number): void
  /** The bucket lives in `region`: asked for anywhere else it answers 301 with `x-amz-bucket-region`. */
  placeBucket(bucket: string, region: string): void
  /** The next matching upload has one byte flipped before S3 checks its Content-MD5 or CRC32. */
  flipByte(key: RegExp): void
  reset(): void
}

/**
 * A throwaway certificate for the front's names, made with the openssl CLI; self-signed, so it is
 * its own CA.
 */
async function makeCertificate(directory: string): Promise<{ key: string; cert: string; caFile: string }> {
  const services = ['s3', 's3.dualstack', 's3-fips', 's3-fips.dualstack']
  const names = REGIONS.flatMap((region) =>
    services.flatMap((service) => [`DNS:*.${service}.${region}.amazonaws.com`, `DNS:${service}.${region}.amazonaws.com`]),
  )
  const keyFile = join(directory, 'front.key')
  const caFile = join(directory, 'front.pem')
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2'].concat([
      '-subj',
      '/CN=push-cache test S3',
      '-addext',
      `subjectAltName=${names.join(',')}`,
      '-keyout',
      keyFile,
      '-out',
      caFile,
    ]),
    { stdio: 'ignore' },
  )
  return { key: await readFile(keyFile, 'utf8'), cert: await readFile(caFile, 'utf8'), caFile }
}

const errorDocument = (code: string, extra = '') =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message>${extra}</Error>`

/** A CRC32 as S3's checksum headers carry it: 4 bytes, big-endian. */
function bigEndian(value: number): Buffer {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32BE(value)
  return bytes
}

/** `x-amz-date` (`20261206T084500Z`) as a time. */
const amzDate = (stamp: string) => Date.parse(stamp.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'))

/**
 * An HTTPS server that answers for `*.s3.<region>.amazonaws.com` the way AWS does, in front of an
 * S3 server on loopback (`upstream`, path style): it checks the clock of each request, the region
 * of each bucket and the Content-MD5 and CRC32 (`x-amz-checksum-crc32`) of each upload, and fails requests on demand. A client reaches
 * it down its real AWS path (no endpoint, virtual-hosted, HTTPS) through the CONNECT proxy.
 */
async function startAwsFront(upstream: string): Promise<AwsFront & { close(): Promise<void> }> {
  const { key, cert, caFile } = await makeCertificate(await tempDir())
  const target = new URL(upstream)
  let faults: FrontFault[] = []
  let clockOffset = 0
  let flips: RegExp[] = []
  const regions = new Map<string, string>()
  const requests: FrontRequest[] = []
  const tunnels: string[] = []

  const front = https.createServer({ key, cert }, async (request, response) => {
    const host = (request.headers.host ?? '').replace(/:\d+$/, '')
    const [, bucketHost, region = ''] = /^(?:(.+)\.)?s3(?:-fips)?(?:\.dualstack)?\.([a-z0-9-]+)\.amazonaws\.com$/.exec(host) ?? []
    const url = new URL(request.url ?? '/', 'https://front')
    const path = decodeURIComponent(url.pathname.slice(1))
    const bucket = bucketHost ?? path.split('/')[0]!
    const objectKey = bucketHost ? path : path.split('/').slice(1).join('/')
    const seen: FrontRequest = {
      method: request.method ?? '',
      host,
      bucket,
      key: objectKey,
      query: url.search.slice(1),
      status: 0,
      region: /Credential=[^/]+\/\d+\/([^/]+)\//.exec(request.headers.authorization ?? '')?.[1],
      checksums: (['content-md5', 'x-amz-checksum-crc32'] as const).filter((name) => request.headers[name] !== undefined),
      payloadHash: request.headers['x-amz-content-sha256'] as string | undefined,
    }
    requests.push(seen)
    const now = new Date(Date.now() + clockOffset)
    const answer = (status: number, body = '', headers: http.OutgoingHttpHeaders = {}) => {
      seen.status = status
      response.writeHead(status, { date: now.toUTCString(), 'content-type': 'application/xml', ...headers }).end(body)
    }
    const chunks: Buffer[] = []
    for await (const chunk of request) chunks.push(chunk as Buffer)
    let body = Buffer.concat(chunks)

    const signedAt = amzDate(String(request.headers['x-amz-date'] ?? ''))
    if (Math.abs(signedAt - now.getTime()) > SKEW_LIMIT_MS)
      return answer(
        403,
        errorDocument('RequestTimeTooSkewed', `<RequestTime>${request.headers['x-amz-date']}</RequestTime><ServerTime>${now.toISOString()}</ServerTime>`),
      )
    const home = regions.get(bucket)
    if (home && home !== region)
      return answer(301, errorDocument('PermanentRedirect', `<Endpoint>${bucket}.s3.${home}.amazonaws.com</Endpoint>`), { 'x-amz-bucket-region': home })
    const fault = faults.find(
      (rule) =>
        (rule.times ?? 1) > 0 &&
        (!rule.method || rule.method === request.method) &&
        (!rule.key || rule.key.test(objectKey)) &&
        (!rule.query || rule.query.test(seen.query)),
    )
    if (fault) {
      if (fault.times !== undefined) fault.times--
      return answer(fault.status, errorDocument(fault.code))
    }
    const flip = request.method === 'PUT' ? flips.findIndex((pattern) => pattern.test(objectKey)) : -1
    if (flip >= 0 && body.length > 0) {
      flips.splice(flip, 1)
      body = Buffer.from(body)
      body[body.length >> 1]! ^= 0x01
    }
    const contentMd5 = request.headers['content-md5']
    if (contentMd5 && createHash('md5').update(body).digest('base64') !== contentMd5) return answer(400, errorDocument('BadDigest'))
    const checksumCrc32 = request.headers['x-amz-checksum-crc32']
    if (checksumCrc32 && bigEndian(crc32(body)).toString('base64') !== checksumCrc32) return answer(400, errorDocument('BadDigest'))

    const headers = { ...request.headers, host: target.host, 'content-length': String(body.length) }
    const onward = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: request.method,
        path: `/${bucket}${bucketHost ? url.pathname : url.pathname.slice(bucket.length + 1)}${url.search}`,
        headers,
      },
      (reply) => {
        seen.status = reply.statusCode ?? 0
        response.writeHead(seen.status, { ...reply.headers, date: now.toUTCString() })
        reply.pipe(response)
      },
    )
    onward.on('error', () => response.destroy())
    onward.end(body)
  })
  await new Promise<void>((listening) => front.listen(0, '127.0.0.1', listening))
  const frontPort = (front.address() as AddressInfo).port

  const sockets = new Set<Socket>()
  const proxy = http.createServer((_, response) => response.writeHead(405).end())
  proxy.on('connect', (request: http.IncomingMessage, client: Socket) => {
    const where = request.url ?? ''
    tunnels.push(where)
    if (!/\.amazonaws\.com:443$/.test(where)) return client.end('HTTP/1.1 403 Forbidden\r\n\r\n')
    const tunnel = connect(frontPort, '127.0.0.1', () => client.write('HTTP/1.1 200 Connection Established\r\n\r\n'))
    for (const socket of [client, tunnel]) {
      sockets.add(socket)
      socket.on('error', () => undefined).on('close', () => sockets.delete(socket))
    }
    client.pipe(tunnel).pipe(client)
  })
  await new Promise<void>((listening) => proxy.listen(0, '127.0.0.1', listening))

  return {
    caFile,
    proxy: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    tunnels,
    requests,
    fault: (rule) => void faults.push(rule),
    skewClock(ms) {
      clockOffset = ms
    },
    placeBucket: (bucket, region) => void regions.set(bucket, region),
    flipByte: (pattern) => void flips.push(pattern),
    reset() {
      faults = []
      flips = []
      clockOffset = 0
      regions.clear()
      requests.length = 0
      tunnels.length = 0
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      front.closeAllConnections()
      proxy.closeAllConnections()
      await Promise.all([new Promise((closed) => front.close(closed)), new Promise((closed) => proxy.close(closed))])
    },
  }
}

/** For the calling suite: one front (and its proxy) before the test S3 server, reset before each test. */
export function awsFront(upstream: () => string): { readonly front: AwsFront } {
  const current = {} as { front: AwsFront & { close(): Promise<void> } }
  beforeAll(async () => {
    current.front = await startAwsFront(upstream())
  })
  afterAll(() => current.front?.close())
  return current
}
