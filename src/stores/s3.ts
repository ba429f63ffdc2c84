import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  type DeleteObjectsCommandOutput,
  GetObjectCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  paginateListObjectsV2,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { state as nodeVersionNotice } from '@aws-sdk/core/client'
import { Upload } from '@aws-sdk/lib-storage'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { forEachLimited } from '../core/concurrency'
import { invalidOption, PushCacheError, redact, timedOut } from '../core/errors'
import { DEFAULT_TIMEOUTS, type S3Options, type StoreTimeouts } from '../core/options'
import type { PutBody, PutOptions, PutResult, Store, StoreEntry } from '../core/store'

const DRIVER_NAME = 's3'

const MIB = 1024 * 1024
const PART_SIZE = 8 * MIB
/** Parts in flight per multipart upload; lib-storage buffers one more while it reads the next. */
const PART_QUEUE = 2
/** DeleteObjects takes at most 1000 keys. */
const DELETE_BATCH = 1000
const SINGLE_DELETE_CONCURRENCY = 8
/** Statuses with which a server says it does not support or accept DeleteObjects as sent. */
const BATCH_DELETE_REJECTED = new Set([400, 405, 411, 501])

type S3Error = Error & { $metadata?: { httpStatusCode?: number } }

/** `s3://bucket[/root/prefix]` → the bucket and the key prefix (`''` or `root/prefix/`). */
function parseS3Url(url: string): { bucket: string; root: string } {
  const [bucket = '', ...segments] = url.replace(/^s3:\/\//i, '').split('/')
  if (!bucket) throw invalidOption('store', `is ${JSON.stringify(redact(url))}, which names no bucket`, 'Use s3://bucket or s3://bucket/root/prefix.')
  const root = segments.filter(Boolean).join('/')
  return { bucket, root: root ? `${root}/` : '' }
}

type HandleArguments = Parameters<NodeHttpHandler['handle']>

/**
 * The SDK's handler with one deadline per HTTP request, from sending it to the last byte of its
 * answer. The SDK's own `requestTimeout` stops counting at the response headers, so a body that
 * stalls or trickles (a download, the XML of a listing) would hold the push for ever.
 */
class DeadlineHttpHandler extends NodeHttpHandler {
  constructor(
    private readonly display: string,
    private readonly requestTimeout: number,
    connectTimeout: number,
  ) {
    super({ connectionTimeout: connectTimeout })
  }

  override async handle(request: HandleArguments[0], options: HandleArguments[1] = {}) {
    const headers = new AbortController()
    let body: Readable | undefined
    // Before the headers the request is aborted; after them the body is destroyed, which fails
    // whoever reads it (the SDK's parser, or pop's download). The error is made only then: its
    // stack trace costs more than the rest of this per request.
    const timer = setTimeout(() => {
      const expired = timedOut(this.display, `${request.method} ${request.path} got no complete answer`, 'request', this.requestTimeout)
      if (body) body.destroy(expired)
      else headers.abort(expired)
    }, this.requestTimeout).unref()
    // Upload passes its own signal (to abort the parts left when one failed): both must work.
    const upload = options.abortSignal as AbortSignal | undefined
    try {
      const result = await super.handle(request, { ...options, abortSignal: upload ? AbortSignal.any([headers.signal, upload]) : headers.signal })
      body = result.response.body as Readable
      body.once('close', () => clearTimeout(timer))
      return result
    } catch (error) {
      clearTimeout(timer)
      throw headers.signal.aborted ? headers.signal.reason : error
    }
  }
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

/**
 * The region when `s3.region` is not set: the SDK's own chain (AWS_REGION, then the `region` of
 * the profile in ~/.aws/config), read from a client given none, so that nothing of ours overrides
 * the profile. A custom endpoint (MinIO, moto) still needs some region to sign with; AWS itself
 * needs the right one, so there a missing region is an error that says where to set it.
 */
function regionFromChain(endpoint: string | undefined): () => Promise<string> {
  let region: Promise<string> | undefined
  const find = async () => {
    const probe = quietClient({})
    try {
      return await probe.config.region()
    } catch {
      if (endpoint) return 'us-east-1'
      throw invalidOption(
        's3.region',
        'is not set, and the AWS SDK found none (AWS_REGION, the `region` of the profile in ~/.aws/config)',
        "Set `s3: { region: 'eu-west-1' }` (`--s3-region` on the command line), AWS_REGION, or a region in your AWS profile.",
      )
    } finally {
      probe.destroy()
    }
  }
  return () => (region ??= find())
}

/**
 * An S3 bucket (or a prefix of one) on AWS or any S3-compatible server. The SDK does not retry
 * (`maxAttempts: 1`): core's `withRetry` owns retries, so a failed request surfaces at once with
 * its HTTP status (or as a transient `STORE_TIMEOUT`) for `isTransient` to judge.
 */
export function createS3Store(url: string, options: S3Options, { connectTimeout, requestTimeout }: StoreTimeouts = DEFAULT_TIMEOUTS): Store {
  const { bucket, root } = parseS3Url(url)
  const endpoint = options.endpoint || process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined
  const multipartThreshold = options.multipartThreshold ?? 8 * MIB
  const whenRequired = options.checksums === 'when_required' ? 'WHEN_REQUIRED' : undefined
  const display = redact(`s3://${bucket}${root ? `/${root.slice(0, -1)}` : ''}${endpoint ? ` at ${endpoint}` : ''}`)
  const config: S3ClientConfig = {
    region: options.region || regionFromChain(endpoint),
    endpoint,
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    credentials: options.credentials,
    requestChecksumCalculation: whenRequired,
    responseChecksumValidation: whenRequired,
    maxAttempts: 1,
    requestHandler: new DeadlineHttpHandler(display, requestTimeout, connectTimeout),
  }
  let client: S3Client | undefined
  const s3 = () => (client ??= quietClient(config))
  let batchDeleteRejected = false

  /**
   * Adds what the user must do to the few errors whose SDK message does not say it, and drops the
   * raw HTTP exchange the SDK hangs on every error (`$response`): its request headers carry the
   * session token and the access key id, for anyone who walks the error to print.
   */
  const clarify = (error: unknown): unknown => {
    if (error instanceof Error) Reflect.deleteProperty(error, '$response')
    const { name, message } = (error ?? {}) as S3Error
    if (name === 'NoSuchBucket')
      return new PushCacheError(
        'STORE_UNREACHABLE',
        `Bucket ${bucket} does not exist in ${display}. Create it (\`aws s3 mb s3://${bucket}\`) or point \`store\` at an existing bucket.`,
        { cause: error },
      )
    // The SDK's `connectionTimeout`; its other TimeoutErrors are resets and broken pipes.
    if (name === 'TimeoutError' && message.includes('did not establish a connection'))
      return timedOut(display, 'no connection was established', 'connect', connectTimeout, error)
    // Node's network errors (ECONNRESET, EPIPE, ECONNREFUSED) name an address, not the store. The
    // code stays, so a retry still sees them as transient.
    const { code } = error as { code?: unknown }
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code) && (error as S3Error).$metadata?.httpStatusCode === undefined)
      return Object.assign(new Error(`${display} could not be reached: ${message}`, { cause: error }), { code })
    return error
  }
  const call = async <T>(request: (client: S3Client) => Promise<T>): Promise<T> => {
    try {
      return await request(s3())
    } catch (error) {
      throw clarify(error)
    }
  }

  const deleteOneByOne = (keys: readonly string[]) =>
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html
    forEachLimited(keys, SINGLE_DELETE_CONCURRENCY, async (key) => {
      await call((c) => c.send(new DeleteObjectCommand({ Bucket: bucket, Key: root + key })))
    })

  const deleteBatch = async (keys: readonly string[]) => {
    if (batchDeleteRejected) return deleteOneByOne(keys)
    let errors: NonNullable<DeleteObjectsCommandOutput['Errors']>
    try {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html
      const output = await s3().send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((key) => ({ Key: root + key })), Quiet: true } }))
      errors = output.Errors ?? []
    } catch (error) {
      if (!BATCH_DELETE_REJECTED.has((error as S3Error)?.$metadata?.httpStatusCode ?? 0)) throw clarify(error)
      batchDeleteRejected = true
      return deleteOneByOne(keys)
    }
    if (errors.length > 0) {
      const listed = errors.slice(0, 3).map((entry) => `${entry.Key?.slice(root.length)} (${entry.Code}: ${entry.Message})`)
      // The first code lets `isTransient` see a SlowDown or InternalError and retry.
      throw Object.assign(
        new Error(`Could not delete ${errors.length} of ${keys.length} keys from ${display}: ${listed.join(', ')}${errors.length > 3 ? ', …' : ''}`),
        { code: errors[0]!.Code },
      )
    }
  }

  return {
    kind: DRIVER_NAME,
    layout: 'flat',
    display,
    // Small objects spend their time in round trips, and the bytes in flight are bounded anyway.
    concurrency: 32,
    bufferedBytes: (size) => (size > multipartThreshold ? PART_SIZE * (PART_QUEUE + 1) : size),
    async put(key: string, body: PutBody, { contentType, cacheControl, metadata }: PutOptions = {}): Promise<PutResult> {
      const params: PutObjectCommandInput = { Bucket: bucket, Key: root + key, ContentType: contentType, CacheControl: cacheControl, Metadata: metadata }
      if (('file' in body ? body.size : body.byteLength) > multipartThreshold) {
        // A fresh stream per attempt; Upload holds at most PART_QUEUE parts in memory.
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html
        const upload = new Upload({
          client: s3(),
          params: { ...params, Body: 'file' in body ? createReadStream(body.file) : body },
          partSize: PART_SIZE,
          queueSize: PART_QUEUE,
        })
        const { ETag } = await call(() => upload.done())
        return { etag: ETag?.replaceAll('"', '') }
      }
      // A Buffer, unlike a stream, can be sent again when core retries.
      const bytes = 'file' in body ? await readFile(body.file) : body
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
      const { ETag } = await call((c) => c.send(new PutObjectCommand({ ...params, Body: bytes, ContentLength: bytes.byteLength })))
      return { etag: ETag?.replaceAll('"', '') }
    },
    async read(key: string): Promise<Readable | undefined> {
      try {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
        const output = await s3().send(new GetObjectCommand({ Bucket: bucket, Key: root + key }))
        // In Node the body is an `http.IncomingMessage`.
        return output.Body as Readable
      } catch (error) {
        const { name, $metadata } = (error ?? {}) as S3Error
        // A missing bucket is a 404 too, but not a missing key: it must not read as "no manifest".
        if (name === 'NoSuchKey' || ($metadata?.httpStatusCode === 404 && name !== 'NoSuchBucket')) return undefined
        throw clarify(error)
      }
    },
    async *list(prefix: string): AsyncIterable<StoreEntry> {
      try {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
        for await (const page of paginateListObjectsV2({ client: s3() }, { Bucket: bucket, Prefix: root + prefix })) {
          for (const object of page.Contents ?? []) {
            if (!object.Key) continue
            yield { key: object.Key.slice(root.length), size: object.Size, lastModified: object.LastModified, etag: object.ETag?.replaceAll('"', '') }
          }
        }
      } catch (error) {
        throw clarify(error)
      }
    },
    async delete(keys: readonly string[]) {
      for (let start = 0; start < keys.length; start += DELETE_BATCH) await deleteBatch(keys.slice(start, start + DELETE_BATCH))
    },
    async close() {
      client?.destroy()
      client = undefined
    },
  }
}
