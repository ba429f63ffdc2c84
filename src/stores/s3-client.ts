import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import https from 'node:https'
import type { Writable } from 'node:stream'
import { timedOut } from '../core/model/errors'
import type { StoreTimeouts } from '../core/model/options'
import { type AwsCredentials, SigV4Signer, sha256Hex, uriEncode } from './sigv4'

/**
 * The few S3 REST calls the store makes, over `node:http` with SigV4, in place of the AWS SDK: its
 * per-request machinery (middleware stack, endpoint rules, checksums, XML models) costs 1.8× the
 * client CPU of bare signed requests for a build of small files (`npm run bench`).
 */

/** An error answer of S3, shaped as the SDK shapes it: the S3 code as `name`, the status in `$metadata`. */
export class S3ServiceError extends Error {
  readonly $metadata: { httpStatusCode: number; requestId?: string }
  constructor(
    code: string,
    message: string,
    status: number,
    requestId?: string,
    /** The region a bucket is in, when S3 says it (`x-amz-bucket-region`, on a 301 or a 400). */
    readonly bucketRegion?: string,
  ) {
    super(message)
    this.name = code
    this.$metadata = { httpStatusCode: status, requestId }
  }
}

interface S3Endpoint {
  /** `http://127.0.0.1:9000`, or undefined for AWS itself (`https://s3.<region>.amazonaws.com`). */
  url?: string
  region: string
  /** `host/bucket/key` rather than `bucket.host/key`. */
  pathStyle: boolean
}

interface S3Request {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE'
  /** The object's full key; unset for a request on the bucket. */
  key?: string
  query?: Record<string, string>
  /** Lower-case names. */
  headers?: Record<string, string>
  body?: Uint8Array | StreamedBody
}

/** A body read from disk as it is sent; its SHA-256, which the signature covers, known beforehand. */
export interface StreamedBody {
  length: number
  sha256: string
  /** Writes the bytes to `request`, each chunk once the previous one went out; called once per attempt. */
  writeTo(request: Writable): Promise<void>
}

interface S3Response {
  status: number
  headers: IncomingHttpHeaders
  /** Must be read to its end (or destroyed): the deadline runs until it closes. */
  body: IncomingMessage
}

/** Parts of `bucket.host` must be DNS labels; anything else is addressed by path. */
const VIRTUAL_HOSTABLE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/

/** Where requests for `bucket` go, and the path prefix before each key. */
function locate(bucket: string, { url, region, pathStyle }: S3Endpoint): { base: URL; prefix: string } {
  const base = new URL(url ?? `https://s3.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`)
  const path = base.pathname.replace(/\/+$/, '')
  if (pathStyle || !VIRTUAL_HOSTABLE.test(bucket)) return { base, prefix: `${path}/${uriEncode(bucket)}` }
  base.hostname = `${bucket}.${base.hostname}`
  return { base, prefix: path }
}

export interface S3ClientOptions {
  bucket: string
  endpoint: S3Endpoint
  credentials: () => Promise<AwsCredentials>
  /** Where the store points, secrets redacted: for messages. */
  display: string
  timeouts: StoreTimeouts
  /** Sockets kept open to the server. */
  maxSockets: number
}

/** Every call throws an answer other than 2xx as an {@link S3ServiceError}. */
export interface S3Client {
  /** Sends `request` and reads the whole answer (a listing, a result document, nothing). */
  send(request: S3Request): Promise<{ headers: IncomingHttpHeaders; text: string }>
  /** Sends `request` and hands on the answer's body as it arrives (a download). */
  open(request: S3Request): Promise<S3Response>
  close(): void
}

export function createS3Client({ bucket, endpoint, credentials, display, timeouts, maxSockets }: S3ClientOptions): S3Client {
  const { base, prefix } = locate(bucket, endpoint)
  // An IPv6 literal without its URL brackets, as sockets take it.
  const hostname = base.hostname.replace(/^\[(.*)\]$/, '$1')
  const transport = base.protocol === 'https:' ? https : http
  const agent = new transport.Agent({ keepAlive: true, maxSockets })
  const signer = new SigV4Signer(endpoint.region)
  const { connectTimeout, requestTimeout } = timeouts

  const open = async ({ method, key, query = {}, headers = {}, body }: S3Request): Promise<S3Response> => {
    const path = key === undefined ? `${prefix}/` : `${prefix}/${key.split('/').map(uriEncode).join('/')}`
    const signed: Record<string, string> = { host: base.host, ...headers }
    const inMemory = body instanceof Uint8Array
    if (body) signed['content-length'] = String(inMemory ? body.byteLength : body.length)
    signer.sign({ method, path, query, headers: signed }, await credentials(), !body ? EMPTY_SHA256 : inMemory ? sha256Hex(body) : body.sha256)
    // A flag (`?uploads`, `?delete`) goes bare on the wire and as `name=` into the signature.
    const search = Object.entries(query)
      .map(([name, value]) => (value ? `${uriEncode(name)}=${uriEncode(value)}` : uriEncode(name)))
      .join('&')
    const response = await exchange(
      { agent, protocol: base.protocol, hostname, port: base.port, method, path: search ? `${path}?${search}` : path, headers: signed },
      `${method} ${path}`,
      body,
    )
    if (response.status < 300) return response
    throw await errorOf(response, method)
  }

  /**
   * One HTTP exchange with one deadline from sending to the last byte of the answer: a body that
   * stalls or trickles (a download, the XML of a listing) must end the push, not hold it. The error
   * is made only when the timer fires: its stack trace costs more than the rest of a request.
   */
  const exchange = (options: http.RequestOptions, what: string, body?: S3Request['body']) =>
    new Promise<S3Response>((resolve, reject) => {
      let answer: IncomingMessage | undefined
      const request = transport.request(options, (response) => {
        answer = response
        response.once('close', () => clearTimeout(deadline))
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: response })
      })
      const fail = (error: Error) => (answer ? answer.destroy(error) : request.destroy(error))
      const deadline = setTimeout(() => fail(timedOut(display, `${what} got no complete answer`, 'request', requestTimeout)), requestTimeout).unref()
      request.once('socket', (socket) => {
        if (!socket.connecting) return
        const connecting = setTimeout(() => fail(timedOut(display, 'no connection was established', 'connect', connectTimeout)), connectTimeout).unref()
        socket.once('connect', () => clearTimeout(connecting)).once('close', () => clearTimeout(connecting))
      })
      request.on('error', (error) => {
        clearTimeout(deadline)
        reject(error)
      })
      if (body === undefined || body instanceof Uint8Array) request.end(body)
      else body.writeTo(request).then(() => request.end(), fail)
    })

  return {
    open,
    async send(request) {
      const { headers, body } = await open(request)
      return { headers, text: await readText(body) }
    },
    close: () => agent.destroy(),
  }
}

const EMPTY_SHA256 = sha256Hex('')

/** The answer's body as text (an error document, a listing). */
async function readText(body: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

const ERROR_BY_STATUS: Record<number, string> = {
  301: 'PermanentRedirect',
  403: 'Forbidden',
  404: 'NotFound',
  412: 'PreconditionFailed',
  503: 'ServiceUnavailable',
}

async function errorOf({ status, headers, body }: S3Response, method: string): Promise<S3ServiceError> {
  const xml = await readText(body).catch(() => '')
  const code = xmlText(xml, 'Code') ?? ERROR_BY_STATUS[status] ?? `HTTP${status}`
  const region = headers['x-amz-bucket-region']
  return new S3ServiceError(
    code,
    xmlText(xml, 'Message') ?? `${method} answered HTTP ${status}`,
    status,
    xmlText(xml, 'RequestId') ?? (headers['x-amz-request-id'] as string | undefined),
    typeof region === 'string' ? region : undefined,
  )
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
/** The entities, the other way round; and a carriage return, which parsers would drop. */
const ESCAPES: Record<string, string> = { ...Object.fromEntries(Object.entries(ENTITIES).map(([name, char]) => [char, `&${name};`])), '\r': '&#13;' }

function unescapeXml(text: string): string {
  return text.replace(/&(?:#x([0-9a-f]+)|#(\d+)|([a-z]+));/gi, (entity, hex?: string, decimal?: string, name?: string) =>
    name ? (ENTITIES[name] ?? entity) : String.fromCodePoint(hex ? Number.parseInt(hex, 16) : Number(decimal)),
  )
}

/**
 * The raw content of every `<tag>` element of `xml`. S3's documents carry no attributes on the
 * elements we read and escape every `<` in text, so a pattern finds them exactly.
 */
export function xmlElements(xml: string, tag: string): string[] {
  return Array.from(xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g')), ([, content]) => content!)
}

/** The text of the first `<tag>` element of `xml`, unescaped. */
export function xmlText(xml: string, tag: string): string | undefined {
  const [content] = xmlElements(xml, tag)
  return content === undefined ? undefined : unescapeXml(content)
}

/** Text as the content of an XML element (a carriage return too, which parsers would drop). */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"'\r]/g, (char) => ESCAPES[char]!)
}
