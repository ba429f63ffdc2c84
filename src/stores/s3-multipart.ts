import { createReadStream } from 'node:fs'
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, type S3Client, UploadPartCommand } from '@aws-sdk/client-s3'
import type { PutBody, PutOptions } from '../core/store/store'
import { forEachLimited, withRetry } from '../core/util/concurrency'
import { md5, md5OfRange } from '../core/util/digest'
import { CHUNK } from '../core/util/file-buffers'
import { type S3Connection, unquote } from './s3-connection'
import { isTransientS3 } from './s3-transient'

const MIB = 1024 * 1024
const PART_SIZE = 8 * MIB
/** Parts of one multipart upload in flight. */
export const PART_QUEUE = 4
/**
 * Attempts of one step of a multipart upload (a part, the completion). A part is retried on its
 * own, here, and the upload then fails for good: core never sends the whole file again.
 */
const PART_ATTEMPTS = 4

/** One step of a multipart upload, retried here; once its attempts are spent, the upload fails for good. */
async function step<T>(call: S3Connection['call'], request: (client: S3Client) => Promise<T>): Promise<T> {
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
export async function putInParts(
  { call, bucket, display }: S3Connection,
  key: string,
  body: PutBody,
  size: number,
  headers: PutOptions,
): Promise<string | undefined> {
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
  if (!UploadId) throw new Error(`${display()} started a multipart upload of ${key} without an UploadId`)
  try {
    const etags: string[] = []
    const parts = Array.from({ length: Math.ceil(size / PART_SIZE) }, (_, index) => index)
    await forEachLimited(parts, PART_QUEUE, async (index) => {
      const start = index * PART_SIZE
      const length = Math.min(PART_SIZE, size - start)
      const inMemory = 'file' in body ? undefined : body.subarray(start, start + length)
      const contentMd5 = inMemory ? md5(inMemory, 'base64') : await md5OfRange((body as { file: string }).file, start, length)
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html
      const { ETag } = await step(call, (c) =>
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
    const { ETag } = await step(call, (c) =>
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
