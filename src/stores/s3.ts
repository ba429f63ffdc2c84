import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  type DeleteObjectsCommandOutput,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import { state as nodeVersionNotice } from '@aws-sdk/core/client'
import { loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS } from '@smithy/core/config'
import { invalidOption, PushCacheError, redact, timedOut } from '../core/model/errors'
import { DEFAULT_TIMEOUTS, type StoreTimeouts } from '../core/model/options'
import { type DeleteOptions, PreconditionFailed, type PutBody, type PutOptions, type PutResult, type Store, type StoreEntry } from '../core/store/store'
import { forEachLimited, withRetry } from '../core/util/concurrency'
import { md5 } from '../core/util/digest'
import { CHUNK, giveBack, readChunks, readWhole } from '../core/util/file-buffers'
import { createRequestHandler } from './s3-http'
import type { S3Options } from './s3-options'
import { isTransientS3, isTransientS3Code, type S3Error } from './s3-transient'

const DRIVER_NAME = 's3'

const MIB = 1024 * 1024
const PART_SIZE = 8 * MIB
/** Parts of one multipart upload in flight. */
const PART_QUEUE = 2
/**
 * Attempts of one step of a multipart upload (a part, the completion). A part is retried on its
 * own, here, and the upload then fails for good: core never sends the whole file again.
 */
const PART_ATTEMPTS = 4
/** Uploads in flight when the user names none: small objects spend their time in round trips. */
const CONCURRENCY = 32
/** How far a push may raise it on a long link; the socket pool is sized for it (sockets open only as needed). */
const MAX_CONCURRENCY = 256
/** DeleteObjects takes at most 1000 keys. */
const DELETE_BATCH = 1000
const SINGLE_DELETE_CONCURRENCY = 8
/** Statuses with which a server says it does not support or accept DeleteObjects as sent. */
const BATCH_DELETE_REJECTED = new Set([400, 405, 411, 501])
/** Pages of one listing: 100 million keys, far beyond any app, but a server repeating itself ends. */
const MAX_LIST_PAGES = 100_000

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

/** MD5 of `length` bytes of a file from `start`, base64, for a part's Content-MD5. */
async function md5OfRange(path: string, start: number, length: number): Promise<string> {
  const hash = createHash('md5')
  await readChunks(path, start, length, (chunk) => hash.update(chunk))
  return hash.digest('base64')
}

const SILENT = { debug() {}, info() {}, warn() {}, error() {} }

/** A key listed with `EncodingType=url`; a server that escaped it wrongly is named, not a bare URIError. */
function decodeListedKey(key: string, display: string): string {
  try {
    return decodeURIComponent(key.replaceAll('+', ' '))
  } catch {
    throw new PushCacheError(
      'STORE_UNREACHABLE',
      `${display} listed a key that is not URL-encoded as asked (EncodingType=url): ${JSON.stringify(key.slice(0, 200))}. Check the S3-compatible server.`,
    )
  }
}

const unquote = (etag: string | undefined) => etag?.replaceAll('"', '')
/** An ETag as a condition header wants it: quoted. */
const quote = (etag: string | undefined) => (etag === undefined ? undefined : `"${unquote(etag)}"`)

/**
 * An S3 bucket (or a prefix of one) on AWS or any S3-compatible server, through the AWS SDK. The
 * SDK does not retry (`maxAttempts: 1`): there is one retry policy, core's `withRetry`, which reads
 * the `transient` mark every error leaving here carries (see {@link isTransientS3}). The SDK
 * still corrects a skewed clock from the server's `Date` and follows a bucket into its region.
 * Multipart parts are the one thing retried here, each on its own, so that no file is sent twice.
 */
export function createS3Store(url: string, options: S3Options, timeouts: StoreTimeouts = DEFAULT_TIMEOUTS): Store {
  const { bucket, root } = parseS3Url(url)
  const multipartThreshold = options.multipartThreshold ?? 8 * MIB
  const prefixDisplay = `s3://${bucket}${root ? `/${root.slice(0, -1)}` : ''}`
  let display = redact(`${prefixDisplay}${options.endpoint ? ` at ${options.endpoint}` : ''}`)
  let client: Promise<S3Client> | undefined
  const s3 = () =>
    (client ??= (async () => {
      const endpoint = options.endpoint || (await configuredEndpoint())
      if (endpoint) display = redact(`${prefixDisplay} at ${endpoint}`)
      return quietClient({
        region: options.region || (await regionFromChain(endpoint)),
        endpoint,
        forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
        credentials: options.credentials,
        // MinIO-likes and older gateways reject the CRC32 the SDK sends by default; every body
        // carries its Content-MD5 instead, and in-memory ones their signed SHA-256.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        followRegionRedirects: true,
        maxAttempts: 1,
        // Without a logger of its own the SDK writes some warnings to the console ("An error was
        // encountered in a non-retryable streaming request"); every error reaches us anyway.
        logger: SILENT,
        requestHandler: await createRequestHandler(display, timeouts, MAX_CONCURRENCY),
      })
    })())
  let batchDeleteRejected = false

  /**
   * Adds what the user must do to the few errors whose SDK message does not say it, marks whether
   * another attempt may succeed, and drops the raw HTTP exchange the SDK hangs on every error
   * (`$response`): its request headers carry the session token and the access key id.
   */
  const clarify = (error: unknown): unknown => {
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
      return timedOut(display, 'no connection was established', 'connect', timeouts.connectTimeout, error)
    // Node's network errors (ECONNRESET, EPIPE, ECONNREFUSED) name an address, not the store.
    const { code } = error as { code?: unknown }
    const transient = isTransientS3(error)
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code) && (error as S3Error).$metadata?.httpStatusCode === undefined)
      return Object.assign(new Error(`${display} could not be reached: ${message}`, { cause: error }), { code, transient })
    return Object.assign(error, { transient })
  }
  /** Every request goes through here: its error comes out clarified and marked; a conditional one that did not hold, as {@link PreconditionFailed}. */
  const call = async <T>(request: (client: S3Client) => Promise<T>, conditionalKey?: string): Promise<T> => {
    try {
      return await request(await s3())
    } catch (error) {
      if (conditionalKey !== undefined && (error as S3Error).$metadata?.httpStatusCode === 412) throw new PreconditionFailed(conditionalKey)
      throw clarify(error)
    }
  }

  const deleteOneByOne = (keys: readonly string[]) =>
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html
    forEachLimited(keys, SINGLE_DELETE_CONCURRENCY, (key) => call((c) => c.send(new DeleteObjectCommand({ Bucket: bucket, Key: root + key }))))

  const deleteBatch = async (keys: readonly string[]) => {
    if (batchDeleteRejected) return deleteOneByOne(keys)
    let errors: NonNullable<DeleteObjectsCommandOutput['Errors']>
    try {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html
      const output = await call((c) =>
        c.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((key) => ({ Key: root + key })), Quiet: true } })),
      )
      errors = output.Errors ?? []
    } catch (error) {
      if (!BATCH_DELETE_REJECTED.has((error as S3Error)?.$metadata?.httpStatusCode ?? 0)) throw error
      batchDeleteRejected = true
      return deleteOneByOne(keys)
    }
    if (errors.length > 0) {
      const listed = errors.slice(0, 3).map((entry) => `${entry.Key?.slice(root.length)} (${entry.Code}: ${entry.Message})`)
      throw Object.assign(
        new Error(`Could not delete ${errors.length} of ${keys.length} keys from ${display}: ${listed.join(', ')}${errors.length > 3 ? ', …' : ''}`),
        { code: errors[0]!.Code, transient: isTransientS3Code(errors[0]!.Code) },
      )
    }
  }

  /** One step of a multipart upload, retried here; once its attempts are spent, the upload fails for good. */
  const step = async <T>(request: (client: S3Client) => Promise<T>): Promise<T> => {
    try {
      return await withRetry(() => call(request), { retries: PART_ATTEMPTS - 1, isTransient: isTransientS3 })
    } catch (error) {
      throw Object.assign(error as Error, { transient: false })
    }
  }

  /**
   * A body above the threshold goes up in parts, PART_QUEUE at a time. A part on disk is read twice,
   * a chunk at a time: once for its Content-MD5, then as the request's body, so that no part is
   * held in memory. A failed upload is aborted, so that no parts are left to pay for.
   */
  const putInParts = async (key: string, body: PutBody, size: number, headers: PutOptions): Promise<string | undefined> => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html
    const { UploadId } = await call((c) =>
      c.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: headers.contentType,
          CacheControl: headers.cacheControl,
          Metadata: headers.metadata,
        }),
      ),
    )
    if (!UploadId) throw new Error(`${display} started a multipart upload of ${key} without an UploadId`)
    try {
      const etags: string[] = []
      const parts = Array.from({ length: Math.ceil(size / PART_SIZE) }, (_, index) => index)
      await forEachLimited(parts, PART_QUEUE, async (index) => {
        const start = index * PART_SIZE
        const length = Math.min(PART_SIZE, size - start)
        const inMemory = 'file' in body ? undefined : body.subarray(start, start + length)
        const contentMd5 = inMemory ? md5(inMemory, 'base64') : await md5OfRange((body as { file: string }).file, start, length)
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html
        const { ETag } = await step((c) =>
          c.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: key,
              UploadId,
              PartNumber: index + 1,
              // A fresh stream per attempt.
              Body: inMemory ?? createReadStream((body as { file: string }).file, { start, end: start + length - 1, highWaterMark: CHUNK }),
              ContentLength: length,
              ContentMD5: contentMd5,
            }),
          ),
        )
        etags[index] = ETag!
      })
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
      const { ETag } = await step((c) =>
        c.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            UploadId,
            MultipartUpload: { Parts: etags.map((etag, index) => ({ ETag: etag, PartNumber: index + 1 })) },
          }),
        ),
      )
      return unquote(ETag)
    } catch (error) {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html
      await call((c) => c.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId }))).catch(() => undefined)
      throw error
    }
  }

  return {
    kind: DRIVER_NAME,
    layout: 'flat',
    get display() {
      return display
    },
    isTransient: isTransientS3,
    conditionalWrites: options.conditionalWrites ?? true,
    concurrency: CONCURRENCY,
    maxConcurrency: MAX_CONCURRENCY,
    // The SDK does not retry, and a request that failed or timed out is destroyed with its socket:
    // nothing sends its body later.
    releasesBodies: true,
    // A part in flight is read through one chunk to hash it, and through one more to send it.
    bufferedBytes: (size) => (size > multipartThreshold ? 2 * CHUNK * PART_QUEUE : size),
    async put(key: string, body: PutBody, headers: PutOptions = {}): Promise<PutResult> {
      const size = 'file' in body ? body.size : body.byteLength
      if (size > multipartThreshold) return { etag: await putInParts(root + key, body, size, headers) }
      const bytes = 'file' in body ? await readWhole(body.file, body.size, true) : body
      try {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
        const { ETag } = await call(
          (c) =>
            c.send(
              new PutObjectCommand({
                Bucket: bucket,
                Key: root + key,
                Body: bytes,
                ContentLength: bytes.byteLength,
                ContentMD5: md5(bytes, 'base64'),
                ContentType: headers.contentType,
                CacheControl: headers.cacheControl,
                Metadata: headers.metadata,
                // Conditional writes (S3 since 2024, MinIO, moto): 412 when the condition does not hold.
                IfNoneMatch: headers.ifNoneMatch,
                IfMatch: quote(headers.ifMatch),
              }),
            ),
          key,
        )
        return { etag: unquote(ETag) }
      } finally {
        if ('file' in body) giveBack(bytes as Buffer)
      }
    },
    async read(key: string): Promise<Readable | undefined> {
      try {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html; in Node the body is an `http.IncomingMessage`.
        return (await call((c) => c.send(new GetObjectCommand({ Bucket: bucket, Key: root + key })))).Body as Readable
      } catch (error) {
        // A missing bucket is a 404 too, but comes out of `clarify` as STORE_UNREACHABLE: it must not read as "no manifest".
        const { name, $metadata } = error as S3Error
        if (name === 'NoSuchKey' || (!(error instanceof PushCacheError) && $metadata?.httpStatusCode === 404)) return undefined
        throw error
      }
    },
    async *list(prefix: string): AsyncIterable<StoreEntry> {
      let token: string | undefined
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html; url encoding
        // carries keys that XML cannot (control characters), and the SDK hands them on encoded.
        const answer = await call((c) =>
          c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: root + prefix || undefined, ContinuationToken: token, EncodingType: 'url' })),
        )
        const decode = answer.EncodingType === 'url' ? (key: string) => decodeListedKey(key, display) : (key: string) => key
        for (const object of answer.Contents ?? []) {
          if (!object.Key) continue
          yield { key: decode(object.Key).slice(root.length), size: object.Size, lastModified: object.LastModified, etag: unquote(object.ETag) }
        }
        const next = answer.IsTruncated ? answer.NextContinuationToken : undefined
        if (!next) return
        if (next === token) throw new Error(`${display} answered the same listing page twice (continuation token ${next})`)
        token = next
      }
      throw new Error(`${display} listed more than ${MAX_LIST_PAGES} pages under ${root + prefix}`)
    },
    async delete(keys: readonly string[], { ifMatch }: DeleteOptions = {}) {
      if (ifMatch !== undefined) {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html (If-Match: general purpose buckets since 2024)
        for (const key of keys) await call((c) => c.send(new DeleteObjectCommand({ Bucket: bucket, Key: root + key, IfMatch: quote(ifMatch) })), key)
        return
      }
      for (let start = 0; start < keys.length; start += DELETE_BATCH) await deleteBatch(keys.slice(start, start + DELETE_BATCH))
    },
    async close() {
      const opened = client
      client = undefined
      // A client that never came (no region) has nothing to close.
      ;(await opened?.catch(() => undefined))?.destroy()
    },
  }
}
