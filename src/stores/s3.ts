import type { Readable } from 'node:stream'
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3'
import { PushCacheError } from '../core/model/errors'
import { DEFAULT_TIMEOUTS, type StoreTimeouts } from '../core/model/options'
import type { PutBody, PutOptions, PutResult, Store, StoreEntry } from '../core/store/store'
import { md5 } from '../core/util/digest'
import { giveBack, readWhole } from '../core/util/file-buffers'
import { connectS3, MAX_CONCURRENCY, quote, type S3Connection, unquote } from './s3-connection'
import { createDeleter } from './s3-delete'
import { createPartBuffers, putInParts } from './s3-multipart'
import type { S3Options } from './s3-options'
import { isTransientS3, type S3Error } from './s3-transient'

const DRIVER_NAME = 's3'

/** Uploads in flight when the user names none: small objects spend their time in round trips. */
const CONCURRENCY = 32
/** Pages of one listing: 100 million keys, far beyond any app, but a server repeating itself ends. */
const MAX_LIST_PAGES = 100_000

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

/**
 * An S3 bucket (or a prefix of one) on AWS or any S3-compatible server, through the AWS SDK. The
 * SDK does not retry (`maxAttempts: 1`): there is one retry policy, core's `withRetry`, which reads
 * the `transient` mark every error leaving here carries (see {@link isTransientS3}). The SDK
 * still corrects a skewed clock from the server's `Date` and follows a bucket into its region.
 * Multipart parts are the one thing retried here, each on its own, so that no file is sent twice.
 */
export function createS3Store(url: string, options: S3Options, timeouts: StoreTimeouts = DEFAULT_TIMEOUTS): Store {
  const connection = connectS3(url, options, timeouts)
  const { bucket, root, call } = connection
  const multipartThreshold = options.multipartThreshold ?? 8 * 1024 * 1024
  const partBuffers = createPartBuffers()
  const partChecksum = options.checksums === 'when_required' ? 'md5' : 'crc32'
  return {
    kind: DRIVER_NAME,
    layout: 'flat',
    get display() {
      return connection.display()
    },
    isTransient: isTransientS3,
    conditionalWrites: options.conditionalWrites ?? true,
    concurrency: CONCURRENCY,
    maxConcurrency: MAX_CONCURRENCY,
    roundTripMs: () => connection.roundTripMs(),
    // The SDK does not retry, and a request that failed or timed out is destroyed with its socket:
    // nothing sends its body later.
    releasesBodies: true,
    // A large file's parts come from the store's own part buffers, bounded there for all of them
    // (see s3-multipart.ts): none from core's budget, which small files then keep to themselves. At
    // 8 MiB each, two large files took all 16 MiB, and on a long link no small file went beside them.
    bufferedBytes: (size) => (size > multipartThreshold ? 0 : size),
    async put(key: string, body: PutBody, headers: PutOptions = {}): Promise<PutResult> {
      const size = 'file' in body ? body.size : body.byteLength
      if (size > multipartThreshold) return putInParts(connection, partBuffers, root + key, body, size, headers, partChecksum)
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
                ContentMD5: headers.md5 ? Buffer.from(headers.md5, 'hex').toString('base64') : md5(bytes, 'base64'),
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
    list: (prefix) => listUnder(connection, prefix),
    listAfter: (prefix, startAfter, maxKeys) => listUnder(connection, prefix, startAfter, maxKeys),
    delete: createDeleter(connection),
    close: () => connection.close(),
  }
}

/**
 * Every key under `prefix` (after `startAfter`, when given), a page of ListObjectsV2 at a time,
 * bounded; the first page `firstPageKeys` long at most (S3's default and most: 1,000).
 */
async function* listUnder(
  { call, bucket, root, display }: S3Connection,
  prefix: string,
  startAfter?: string,
  firstPageKeys?: number,
): AsyncIterable<StoreEntry> {
  let token: string | undefined
  for (let page = 0; page < MAX_LIST_PAGES; page++) {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html; url encoding
    // carries keys that XML cannot (control characters), and the SDK hands them on encoded.
    const answer = await call((c) =>
      c.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: root + prefix || undefined,
          StartAfter: startAfter === undefined ? undefined : root + startAfter,
          ContinuationToken: token,
          MaxKeys: page === 0 ? firstPageKeys : undefined,
          EncodingType: 'url',
        }),
      ),
    )
    const decode = answer.EncodingType === 'url' ? (key: string) => decodeListedKey(key, display()) : (key: string) => key
    for (const object of answer.Contents ?? []) {
      if (!object.Key) continue
      yield { key: decode(object.Key).slice(root.length), size: object.Size, lastModified: object.LastModified, etag: unquote(object.ETag) }
    }
    const next = answer.IsTruncated ? answer.NextContinuationToken : undefined
    if (!next) return
    if (next === token) throw new Error(`${display()} answered the same listing page twice (continuation token ${next})`)
    token = next
  }
  throw new Error(`${display()} listed more than ${MAX_LIST_PAGES} pages under ${root + prefix}`)
}
