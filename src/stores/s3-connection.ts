import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3'
import { state as nodeVersionNotice } from '@aws-sdk/core/client'
import { loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS } from '@smithy/core/config'
import { invalidOption, PushCacheError, redact, timedOut } from '../core/model/errors'
import type { StoreTimeouts } from '../core/model/options'
import { PreconditionFailed } from '../core/store/store'
import { createRequestHandler, QuickestAnswer } from './s3-http'
import type { S3Options } from './s3-options'
import { serdeWithoutConfigCopies } from './s3-serde'
import { isTransientS3, type S3Error } from './s3-transient'

export const unquote = (etag: string | undefined) => etag?.replaceAll('"', '')
/** An ETag as a condition header wants it: quoted. */
export const quote = (etag: string | undefined) => (etag === undefined ? undefined : `"${unquote(etag)}"`)

/** How far a push may raise its uploads on a long link; the socket pool is sized for it (sockets open only as needed). */
export const MAX_CONCURRENCY = 256

/** One bucket (or a prefix of one) and the SDK client that reaches it, made on first use. */
export interface S3Connection {
  bucket: string
  /** The key prefix of `s3://bucket/root/`: `''` or `root/`. */
  root: string
  /** Where it points, secrets redacted; the endpoint is known once the client is made. */
  display(): string
  /**
   * Every request goes through here: its error comes out clarified and marked (`transient`); with
   * `conditionalKey`, a condition that did not hold comes out as {@link PreconditionFailed}.
   */
  call<T>(request: (client: S3Client) => Promise<T>, conditionalKey?: string): Promise<T>
  /** The quickest request answered so far, in milliseconds (what `Store.roundTripMs` tells). */
  roundTripMs(): number | undefined
  close(): Promise<void>
}

/** `s3://bucket[/root/prefix]` → the bucket and the key prefix (`''` or `root/prefix/`). */
function parseS3Url(url: string): { bucket: string; root: string } {
  const [bucket = '', ...segments] = url.replace(/^s3:\/\//i, '').split('/')
  if (!bucket) throw invalidOption('store', `is ${JSON.stringify(redact(url))}, which names no bucket`, 'Use s3://bucket or s3://bucket/root/prefix.')
  const root = segments.filter(Boolean).join('/')
  return { bucket, root: root ? `${root}/` : '' }
}

/**
 * Builds an SDK client without its notice that SDK releases after January 2027 will need Node 22
 * (aws/aws-sdk-js-v3#7983): it is printed once per process, by the first client built, and is not
 * about the SDK this package pins. The notice is re-armed afterwards, so the build's own SDK
 * clients still print it.
 */
function quietClient(config: S3ClientConfig): S3Client {
  const emitted = nodeVersionNotice.warningEmitted
  nodeVersionNotice.warningEmitted = true
  try {
    return new S3Client(config)
  } finally {
    nodeVersionNotice.warningEmitted = emitted
  }
}

/** The SDK's region chain, except that a blank AWS_REGION (a CI variable left empty) counts as unset. */
const REGION_CHAIN = {
  ...NODE_REGION_CONFIG_OPTIONS,
  environmentVariableSelector: (env: NodeJS.ProcessEnv) => env.AWS_REGION?.trim() || undefined,
}

/**
 * The region when `s3.region` is not set: AWS_REGION, then the `region` of the profile in
 * ~/.aws/config. A custom endpoint (MinIO, moto) still needs some region to sign with; AWS itself
 * needs one to start from (a bucket elsewhere is then followed), so there a missing region is an
 * error that says where to set it.
 */
async function regionFromChain(endpoint: string | undefined): Promise<string> {
  try {
    return await loadConfig(REGION_CHAIN, NODE_REGION_CONFIG_FILE_OPTIONS)()
  } catch {
    if (endpoint) return 'us-east-1'
    throw invalidOption(
      's3.region',
      'is not set, and the AWS SDK found none (AWS_REGION, the `region` of the profile in ~/.aws/config)',
      "Set `s3: { region: 'eu-west-1' }` (`--s3-region` on the command line), AWS_REGION, or a region in your AWS profile.",
    )
  }
}

/**
 * The endpoint the SDK's own rules configure when `s3.endpoint` is not set: AWS_ENDPOINT_URL_S3,
 * AWS_ENDPOINT_URL, or `endpoint_url` in the profile (its `services` section first), unless
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS. Asked of a client given nothing, so that nothing of ours overrides it.
 */
async function configuredEndpoint(): Promise<string | undefined> {
  const probe = quietClient({ region: 'us-east-1' })
  try {
    return (await probe.config.serviceConfiguredEndpoint?.()) || undefined
  } finally {
    probe.destroy()
  }
}

const SILENT = { debug() {}, info() {}, warn() {}, error() {} }

/** Where the SDK client points: the endpoint (none: AWS) and the region it signs for. */
interface ClientTarget {
  endpoint: string | undefined
  region: string
}

/** The region an S3 error answer names for the bucket (`x-amz-bucket-region`: a redirect, or a refusal). */
const bucketRegionOf = (error: unknown): string | undefined =>
  (error as { $response?: { headers?: Record<string, string | undefined> } })?.$response?.headers?.['x-amz-bucket-region'] || undefined

const CONTENT_SHA256 = 'x-amz-content-sha256'

/**
 * A body goes out as `UNSIGNED-PAYLOAD` (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html)
 * where something else already guards its bytes: TLS, or a signed Content-MD5 (no one can make other
 * bytes with the same MD5). The signer would otherwise SHA-256 every body, one more pass over the
 * build. A multipart part over plain HTTP keeps its SHA-256 signed: its CRC32 anyone could match.
 */
export function leavePayloadUnsigned(request: { protocol?: string; body?: unknown; headers?: Record<string, string> }): void {
  const { protocol, body, headers } = request
  if (!headers || !ArrayBuffer.isView(body) || headers[CONTENT_SHA256] !== undefined) return
  const md5Signed = Object.keys(headers).some((name) => name.toLowerCase() === 'content-md5')
  if (protocol === 'https:' || md5Signed) headers[CONTENT_SHA256] = 'UNSIGNED-PAYLOAD'
}

/** The SDK's signer factory, as a client's resolved config holds it. */
type SignerFactory = S3Client['config']['signer']

/**
 * The SDK makes a signer for every request (`config.signer(authScheme)`): a copy of the whole client
 * config, and a signer whose signing-key cache starts empty, so five HMACs where one would do. The
 * signer depends only on the endpoint's auth scheme (name, region, service; the credentials and the
 * clock are read when it signs), so one is made per scheme and kept.
 */
export function signerPerScheme(make: SignerFactory): SignerFactory {
  const made = new Map<string, ReturnType<SignerFactory>>()
  return (authScheme) => {
    const scheme = JSON.stringify(authScheme ?? null)
    let signer = made.get(scheme)
    if (!signer) {
      signer = make(authScheme)
      made.set(scheme, signer)
      signer.catch(() => made.delete(scheme))
    }
    return signer
  }
}

/** The SDK's provider of the user agent's fixed sections, as a client's resolved config holds it. */
type UserAgentProvider = S3Client['config']['defaultUserAgentProvider']

/**
 * The SDK asks for the user agent's fixed sections on every request, and builds them anew each
 * time: the OS release (a system call), the environment, the app id. They do not change while the
 * process lives, so the first answer is kept: the SDK copies it before it adds a request's own.
 * A seventh of a small upload's CPU.
 */
export function userAgentOnce(make: UserAgentProvider): UserAgentProvider {
  let made: ReturnType<UserAgentProvider> | undefined
  return () => {
    if (!made) {
      made = make()
      made.catch(() => (made = undefined))
    }
    return made
  }
}

/**
 * The SDK client for `target`. Each command's middleware is resolved once (`cacheMiddleware`), not
 * per request: a tenth of a request's CPU. The SDK then shares one context among the requests of a
 * command, where its region redirect keeps per-request state, so a client must not see concurrent
 * redirects: `onBucketRegion` hears the region any error answer names, for the caller to make a
 * client in that region (see {@link connectS3}).
 */
async function makeClient(
  options: S3Options,
  timeouts: StoreTimeouts,
  display: string,
  target: ClientTarget,
  onBucketRegion: (region: string) => void,
  quickest: QuickestAnswer,
) {
  const made = quietClient({
    ...target,
    forcePathStyle: options.forcePathStyle ?? target.endpoint !== undefined,
    credentials: options.credentials,
    // MinIO-likes and older gateways reject the CRC32 trailers the SDK sends by default; every
    // body carries its Content-MD5 (a multipart part, its CRC32 header) instead, and in-memory
    // ones their signed SHA-256.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    followRegionRedirects: true,
    cacheMiddleware: true,
    maxAttempts: 1,
    // Without a logger of its own the SDK writes some warnings to the console ("An error was
    // encountered in a non-retryable streaming request"); every error reaches us anyway.
    logger: SILENT,
    requestHandler: await createRequestHandler(display, timeouts, MAX_CONCURRENCY, quickest),
  })
  made.config.signer = signerPerScheme(made.config.signer)
  made.config.defaultUserAgentProvider = userAgentOnce(made.config.defaultUserAgentProvider)
  serdeWithoutConfigCopies(made)
  // It would render every request's input and output for a logger that drops them.
  made.middlewareStack.remove('loggerMiddleware')
  // With `maxAttempts: 1` the SDK's retry middleware only stamps each request with an invocation id
  // and an attempt count, a tenth of a request's CPU; it keeps its name, which the signing step is placed after.
  made.middlewareStack.add((next) => next, { step: 'finalizeRequest', priority: 'high', name: 'retryMiddleware', tags: ['RETRY'], override: true })
  made.middlewareStack.add(
    (next) => (args) => {
      leavePayloadUnsigned(args.request as Parameters<typeof leavePayloadUnsigned>[0])
      return next(args)
    },
    { step: 'build', name: 'unsignedPayloadMiddleware' },
  )
  // Inside the SDK's region redirect (same step, lower priority): it sees the answer the redirect follows.
  made.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args)
      } catch (error) {
        const region = bucketRegionOf(error)
        if (region) onBucketRegion(region)
        throw error
      }
    },
    { step: 'initialize', priority: 'low', name: 'bucketRegionMiddleware' },
  )
  return made
}

/**
 * Adds what the user must do to the few errors whose SDK message does not say it, marks whether
 * another attempt may succeed, and drops the raw HTTP exchange the SDK hangs on every error
 * (`$response`): its request headers carry the session token and the access key id.
 */
function clarify(error: unknown, bucket: string, display: string, connectTimeout: number): unknown {
  if (!(error instanceof Error) || error instanceof PushCacheError) return error
  Reflect.deleteProperty(error, '$response')
  const { name, message } = error as S3Error
  if (name === 'NoSuchBucket')
    return new PushCacheError(
      'STORE_UNREACHABLE',
      `Bucket ${bucket} does not exist in ${display}. Create it (\`aws s3 mb s3://${bucket}\`) or point \`store\` at an existing bucket.`,
      { cause: error },
    )
  // The SDK's `connectionTimeout`; its other TimeoutErrors are resets and broken pipes.
  if (name === 'TimeoutError' && message.includes('did not establish a connection'))
    return timedOut(display, 'no connection was established', 'connect', connectTimeout, error)
  // Node's network errors (ECONNRESET, EPIPE, ECONNREFUSED) name an address, not the store.
  const { code } = error as { code?: unknown }
  const transient = isTransientS3(error)
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code) && (error as S3Error).$metadata?.httpStatusCode === undefined)
    return Object.assign(new Error(`${display} could not be reached: ${message}`, { cause: error }), { code, transient })
  return Object.assign(error, { transient })
}

/**
 * A client made in the bucket's region never needs the SDK's region redirect, and then no request
 * shares redirect state with another. Until S3 has answered one request, requests go one at a
 * time; if the answers named another region for the bucket, the client is made again there.
 */
export function connectS3(url: string, options: S3Options, timeouts: StoreTimeouts): S3Connection {
  const { bucket, root } = parseS3Url(url)
  const prefixDisplay = `s3://${bucket}${root ? `/${root.slice(0, -1)}` : ''}`
  let display = redact(`${prefixDisplay}${options.endpoint ? ` at ${options.endpoint}` : ''}`)
  let client: Promise<{ s3: S3Client; target: ClientTarget }> | undefined
  let bucketRegion: string | undefined
  /** Kept across a redirect's new client: the link is the same. */
  const quickest = new QuickestAnswer()
  const open = (target: ClientTarget) =>
    makeClient(options, timeouts, display, target, (region) => (bucketRegion = region), quickest).then((s3) => ({ s3, target }))
  const s3 = () =>
    (client ??= (async () => {
      const endpoint = options.endpoint || (await configuredEndpoint())
      if (endpoint) display = redact(`${prefixDisplay} at ${endpoint}`)
      return open({ endpoint, region: options.region || (await regionFromChain(endpoint)) })
    })())
  /** Whether S3 answered a request yet; until then `alone` is the one request in flight. */
  let answered = false
  let alone: Promise<void> | undefined
  /** The client a redirect made obsolete: destroyed on close, as the body of the answer it followed may still be streaming. */
  let redirected: S3Client | undefined
  const heard = async (error: unknown) => {
    const current = await client?.catch(() => undefined)
    if (current && bucketRegion && bucketRegion !== current.target.region) {
      client = open({ ...current.target, region: bucketRegion })
      redirected = current.s3
    }
    answered ||= error === undefined || (error as S3Error).$metadata?.httpStatusCode !== undefined
    alone = undefined
  }

  const call = async <T>(request: (client: S3Client) => Promise<T>, conditionalKey?: string): Promise<T> => {
    while (!answered && alone) await alone
    const attempt = s3().then((made) => request(made.s3))
    if (!answered) alone = attempt.then(() => heard(undefined), heard)
    try {
      return await attempt
    } catch (error) {
      if (conditionalKey !== undefined && (error as S3Error).$metadata?.httpStatusCode === 412) throw new PreconditionFailed(conditionalKey)
      throw clarify(error, bucket, display, timeouts.connectTimeout)
    }
  }

  return {
    bucket,
    root,
    display: () => display,
    call,
    roundTripMs: () => quickest.ms,
    async close() {
      const opened = client
      client = undefined
      redirected?.destroy()
      // A client that never came (no region) has nothing to close.
      ;(await opened?.catch(() => undefined))?.s3.destroy()
    },
  }
}
