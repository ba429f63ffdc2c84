import type { Readable, Writable } from 'node:stream'
import { defaultProvider } from '@aws-sdk/credential-provider-node'
import { loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS } from '@smithy/core/config'
import { invalidOption, PushCacheError, redact } from '../core/model/errors'
import { DEFAULT_TIMEOUTS, type StoreTimeouts } from '../core/model/options'
import type { PutBody, PutOptions, PutResult, Store, StoreEntry } from '../core/store/store'
import { forEachLimited } from '../core/util/concurrency'
import { md5, sha256OfRange } from '../core/util/digest'
import { CHUNK, giveBack, readChunks, readWhole } from '../core/util/file-buffers'
import { createS3Client, escapeXml, type S3Client, S3ServiceError, type StreamedBody, xmlElements, xmlText } from './s3-client'
import type { S3Options } from './s3-options'
import { isTransientS3 } from './s3-transient'
import type { AwsCredentials } from './sigv4'

const DRIVER_NAME = 's3'

const MIB = 1024 * 1024
const PART_SIZE = 8 * MIB
/** Parts of one multipart upload in flight. */
const PART_QUEUE = 2
/** Uploads in flight when the user names none: small objects spend their time in round trips. */
const CONCURRENCY = 32
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
 * The region when `s3.region` is not set: the SDK's own chain (AWS_REGION, then the `region` of
 * the profile in ~/.aws/config). A custom endpoint (MinIO, moto) still needs some region to sign
 * with; AWS itself needs the right one, so there a missing region is an error that says where to set it.
 */
async function regionFromChain(endpoint: string | undefined): Promise<string> {
  try {
    return await loadConfig(NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS)()
  } catch {
    if (endpoint) return 'us-east-1'
    throw invalidOption(
      's3.region',
      'is not set, and the AWS SDK found none (AWS_REGION, the `region` of the profile in ~/.aws/config)',
      "Set `s3: { region: 'eu-west-1' }` (`--s3-region` on the command line), AWS_REGION, or a region in your AWS profile.",
    )
  }
}

/** Writes `length` bytes of a file from `start` to `request` through one reused chunk: a chunk is read again only once the last one went out. */
async function sendRange(request: Writable, path: string, start: number, length: number): Promise<void> {
  await readChunks(path, start, length, (chunk) => new Promise<void>((done, failed) => request.write(chunk, (error) => (error ? failed(error) : done()))))
}

const unquote = (etag: string | string[] | undefined) => (typeof etag === 'string' ? etag.replaceAll('"', '') : undefined)

/**
 * An S3 bucket (or a prefix of one) on AWS or any S3-compatible server, over the few REST calls
 * of `s3-client`. Nothing is retried here: core's `withRetry` owns retries, so a failed request
 * surfaces at once with its HTTP status (or as a transient `STORE_TIMEOUT`) for `isTransient` to judge.
 */
export function createS3Store(url: string, options: S3Options, timeouts: StoreTimeouts = DEFAULT_TIMEOUTS): Store {
  const { bucket, root } = parseS3Url(url)
  const endpoint = options.endpoint || process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined
  const multipartThreshold = options.multipartThreshold ?? 8 * MIB
  const display = redact(`s3://${bucket}${root ? `/${root.slice(0, -1)}` : ''}${endpoint ? ` at ${endpoint}` : ''}`)
  const given = options.credentials
  const credentials: () => Promise<AwsCredentials> = given ? async () => given : defaultProvider()
  let region: string | undefined
  let client: Promise<S3Client> | undefined
  const s3 = () =>
    (client ??= (async () => {
      region = options.region || (await regionFromChain(endpoint))
      const pathStyle = options.forcePathStyle ?? endpoint !== undefined
      return createS3Client({ bucket, endpoint: { url: endpoint, region, pathStyle }, credentials, display, timeouts, maxSockets: 2 * CONCURRENCY })
    })())
  let batchDeleteRejected = false

  /** Adds what the user must do to the few errors whose S3 message does not say it. */
  const clarify = (error: unknown): unknown => {
    if (error instanceof S3ServiceError) {
      if (error.name === 'NoSuchBucket')
        return new PushCacheError(
          'STORE_UNREACHABLE',
          `Bucket ${bucket} does not exist in ${display}. Create it (\`aws s3 mb s3://${bucket}\`) or point \`store\` at an existing bucket.`,
          { cause: error },
        )
      if (error.bucketRegion && error.bucketRegion !== region)
        return invalidOption(
          's3.region',
          `is ${region}, but bucket ${bucket} is in ${error.bucketRegion} (${error.name})`,
          `Set \`s3: { region: '${error.bucketRegion}' }\` (\`--s3-region ${error.bucketRegion}\`, or AWS_REGION).`,
        )
      return error
    }
    // Node's network errors (ECONNRESET, EPIPE, ECONNREFUSED) name an address, not the store. The
    // code stays, so a retry still sees them as transient.
    const { code, message } = (error ?? {}) as { code?: unknown; message?: string }
    if (!(error instanceof PushCacheError) && typeof code === 'string' && /^E[A-Z]+$/.test(code))
      return Object.assign(new Error(`${display} could not be reached: ${message}`, { cause: error }), { code })
    return error
  }
  /** Every request goes through here: its error comes out clarified. */
  const call = async <T>(use: (client: S3Client) => Promise<T>): Promise<T> => {
    try {
      return await use(await s3())
    } catch (error) {
      throw clarify(error)
    }
  }
  const send = (request: Parameters<S3Client['send']>[0]) => call((c) => c.send(request))

  const deleteOneByOne = (keys: readonly string[]) =>
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html
    forEachLimited(keys, SINGLE_DELETE_CONCURRENCY, (key) => send({ method: 'DELETE', key: root + key }))

  const deleteBatch = async (keys: readonly string[]) => {
    if (batchDeleteRejected) return deleteOneByOne(keys)
    const body = Buffer.from(`<Delete><Quiet>true</Quiet>${keys.map((key) => `<Object><Key>${escapeXml(root + key)}</Key></Object>`).join('')}</Delete>`)
    let answer: string
    try {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html (Content-MD5 is required)
      answer = (await send({ method: 'POST', query: { delete: '' }, headers: { 'content-md5': md5(body, 'base64') }, body })).text
    } catch (error) {
      if (!(error instanceof S3ServiceError && BATCH_DELETE_REJECTED.has(error.$metadata.httpStatusCode))) throw error
      batchDeleteRejected = true
      return deleteOneByOne(keys)
    }
    const errors = xmlElements(answer, 'Error').map((error) => ({
      key: xmlText(error, 'Key') ?? '',
      code: xmlText(error, 'Code'),
      message: xmlText(error, 'Message'),
    }))
    if (errors.length > 0) {
      const listed = errors.slice(0, 3).map((entry) => `${entry.key.slice(root.length)} (${entry.code}: ${entry.message})`)
      // The first code lets `isTransient` see a SlowDown or InternalError and retry.
      throw Object.assign(
        new Error(`Could not delete ${errors.length} of ${keys.length} keys from ${display}: ${listed.join(', ')}${errors.length > 3 ? ', …' : ''}`),
        { code: errors[0]!.code },
      )
    }
  }

  /**
   * A body above the threshold goes up in parts, PART_QUEUE at a time; a part on disk is hashed
   * (its signature needs the SHA-256) and then streamed, so that no part is held in memory. A failed
   * upload is aborted, so that no parts are left to pay for.
   */
  const putInParts = async (key: string, body: PutBody, size: number, headers: Record<string, string>): Promise<string | undefined> => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html
    const uploadId = xmlText((await send({ method: 'POST', key, query: { uploads: '' }, headers })).text, 'UploadId')
    if (!uploadId) throw new Error(`${display} started a multipart upload of ${key} without an UploadId`)
    try {
      const etags: string[] = []
      const parts = Array.from({ length: Math.ceil(size / PART_SIZE) }, (_, index) => index)
      await forEachLimited(parts, PART_QUEUE, async (index) => {
        const start = index * PART_SIZE
        const length = Math.min(PART_SIZE, size - start)
        const part: StreamedBody | Uint8Array =
          'file' in body
            ? { length, sha256: await sha256OfRange(body.file, start, length), writeTo: (request) => sendRange(request, body.file, start, length) }
            : body.subarray(start, start + length)
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html
        const { headers: answer } = await send({ method: 'PUT', key, query: { partNumber: String(index + 1), uploadId }, body: part })
        etags[index] = answer.etag as string
      })
      const partList = etags.map((etag, index) => `<Part><PartNumber>${index + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`)
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
      const { text } = await send({
        method: 'POST',
        key,
        query: { uploadId },
        body: Buffer.from(`<CompleteMultipartUpload>${partList.join('')}</CompleteMultipartUpload>`),
      })
      // S3 may answer 200 and still fail: the error is then the body.
      const code = xmlText(text, 'Code')
      if (code) throw clarify(new S3ServiceError(code, xmlText(text, 'Message') ?? 'CompleteMultipartUpload failed', 200))
      return unquote(xmlText(text, 'ETag'))
    } catch (error) {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html
      await send({ method: 'DELETE', key, query: { uploadId } }).catch(() => undefined)
      throw error
    }
  }

  return {
    kind: DRIVER_NAME,
    layout: 'flat',
    display,
    isTransient: isTransientS3,
    concurrency: CONCURRENCY,
    // A request that failed or timed out is destroyed with its socket: nothing sends its body later.
    releasesBodies: true,
    // A part in flight is read through one chunk, to hash it and then to send it.
    bufferedBytes: (size) => (size > multipartThreshold ? CHUNK * PART_QUEUE : size),
    async put(key: string, body: PutBody, { contentType, cacheControl, metadata = {} }: PutOptions = {}): Promise<PutResult> {
      const headers: Record<string, string> = {}
      if (contentType) headers['content-type'] = contentType
      if (cacheControl) headers['cache-control'] = cacheControl
      for (const [name, value] of Object.entries(metadata)) headers[`x-amz-meta-${name}`] = value
      const size = 'file' in body ? body.size : body.byteLength
      if (size > multipartThreshold) return { etag: await putInParts(root + key, body, size, headers) }
      const bytes = 'file' in body ? await readWhole(body.file, body.size, true) : body
      try {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
        const { headers: answer } = await send({ method: 'PUT', key: root + key, headers, body: bytes })
        return { etag: unquote(answer.etag) }
      } finally {
        if ('file' in body) giveBack(bytes as Buffer)
      }
    },
    async read(key: string): Promise<Readable | undefined> {
      try {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
        return (await call((c) => c.open({ method: 'GET', key: root + key }))).body
      } catch (error) {
        // A missing bucket is a 404 too, but comes out of `clarify` as STORE_UNREACHABLE: it must not read as "no manifest".
        if (error instanceof S3ServiceError && error.$metadata.httpStatusCode === 404) return undefined
        throw error
      }
    },
    async *list(prefix: string): AsyncIterable<StoreEntry> {
      let token: string | undefined
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html; url encoding
        // carries keys that XML cannot (control characters).
        const query: Record<string, string> = { 'list-type': '2', 'encoding-type': 'url' }
        if (root + prefix) query.prefix = root + prefix
        if (token) query['continuation-token'] = token
        const { text } = await send({ method: 'GET', query })
        const urlEncoded = xmlText(text, 'EncodingType') === 'url'
        for (const object of xmlElements(text, 'Contents')) {
          const key = xmlText(object, 'Key')
          if (!key) continue
          const size = xmlText(object, 'Size')
          const lastModified = xmlText(object, 'LastModified')
          yield {
            key: (urlEncoded ? decodeURIComponent(key.replaceAll('+', ' ')) : key).slice(root.length),
            size: size === undefined ? undefined : Number(size),
            lastModified: lastModified === undefined ? undefined : new Date(lastModified),
            etag: unquote(xmlText(object, 'ETag')),
          }
        }
        const next = xmlText(text, 'IsTruncated') === 'true' ? xmlText(text, 'NextContinuationToken') : undefined
        if (!next) return
        if (next === token) throw new Error(`${display} answered the same listing page twice (continuation token ${next})`)
        token = next
      }
      throw new Error(`${display} listed more than ${MAX_LIST_PAGES} pages under ${root + prefix}`)
    },
    async delete(keys: readonly string[]) {
      for (let start = 0; start < keys.length; start += DELETE_BATCH) await deleteBatch(keys.slice(start, start + DELETE_BATCH))
    },
    async close() {
      const opened = client
      client = undefined
      // A client that never came (no region) has nothing to close.
      const current = await opened?.catch(() => undefined)
      current?.close()
    },
  }
}
