import { createHash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import type { PutBody, PutOptions, PutResult } from '../core/store/store'
import { forEachLimited, withRetry } from '../core/util/concurrency'
import { md5 } from '../core/util/digest'
import { openSized, readInto } from '../core/util/file-buffers'
import { type S3Connection, unquote } from './s3-connection'
import { isTransientS3 } from './s3-transient'

const MIB = 1024 * 1024
/** Bytes of a part but the last: the AWS CLI's 8 MiB. */
const PART_SIZE = 8 * MIB
/** Parts in flight, across every multipart upload of one store: each holds a part in memory. */
const PART_QUEUE = 4
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
 * The part buffers of one store, PART_QUEUE at most, shared by its multipart uploads: the bytes
 * they hold stay bounded however many large files core sends at once. A buffer is reused from
 * part to part (a fresh 8 MiB each time is garbage V8 frees late); none is kept once all are back.
 * A buffer given back goes to the upload that began first, not to the one that asked first: core
 * starts every large file at once, and shared in turn the files' parts went round the uploads, so
 * that all of them ended together, their completions (the server joins each file's parts) one
 * after another at the end with no part beside them. One file at a time, each file's completion
 * overlaps the next file's parts, and the server holds one unfinished file, not all of them.
 */
export function createPartBuffers() {
  const free: Buffer[] = []
  /** At most one per upload (an upload reads its parts in turn), the one that began first at the head. */
  const waiting: { upload: number; lend: (buffer: Buffer) => void }[] = []
  let lent = 0
  let uploads = 0
  return {
    /** The number of an upload that begins: a lower number gets buffers first. */
    begin: (): number => uploads++,
    async take(upload: number): Promise<Buffer> {
      lent++
      const spare = free.pop()
      if (spare) return spare
      if (lent <= PART_QUEUE) return Buffer.allocUnsafeSlow(PART_SIZE)
      return new Promise((lend) => {
        const later = waiting.findIndex((waiter) => waiter.upload > upload)
        waiting.splice(later === -1 ? waiting.length : later, 0, { upload, lend })
      })
    },
    giveBack(buffer: Buffer): void {
      lent--
      const next = waiting.shift()
      if (next) next.lend(buffer)
      else if (lent > 0) free.push(buffer)
      else free.length = 0
    },
  }
}

export type PartBuffers = ReturnType<typeof createPartBuffers>

/** How a part proves its bytes to S3: its CRC32 (`'crc32'`), or its Content-MD5 for a server that refuses flexible checksums. */
export type PartChecksum = 'crc32' | 'md5'

/** A part ready to send: its bytes, the one checksum S3 checks them against, and what gives its buffer back. */
interface Part {
  bytes: Uint8Array
  crc32?: string
  contentMd5?: string
  release(): void
}

/** The `x-amz-checksum-crc32` of `bytes`: their CRC32, 4 bytes big-endian, in base64. */
export function checksumCrc32(bytes: Uint8Array): string {
  const value = Buffer.alloc(4)
  value.writeUInt32BE(crc32(bytes))
  return value.toString('base64')
}

/** Reads the part of `length` bytes from `start`; called in part order, one at a time. */
type PartReader = (start: number, length: number) => Promise<Part>

/**
 * A body above the threshold goes up in parts, PART_QUEUE at a time. Each byte on disk is read once,
 * in part order, into a part buffer that is summed for the part's CRC32 and hashed into the whole
 * body's MD5 (returned, so that core need not read the file again), and sent as the request's
 * body, on every attempt. A part carries a CRC32 where a small body carries its Content-MD5: S3
 * refuses a part whose bytes changed on the way either way, and CRC32 costs a fifth of MD5's CPU
 * (the aws CLI's default since 2025, in the same `x-amz-checksum-crc32` header).
 */
export async function putInParts(
  connection: S3Connection,
  buffers: PartBuffers,
  key: string,
  body: PutBody,
  size: number,
  headers: PutOptions,
  partChecksum: PartChecksum,
): Promise<PutResult> {
  const whole = createHash('md5')
  const hashed = (bytes: Uint8Array, release = () => {}): Part => {
    whole.update(bytes)
    return partChecksum === 'crc32' ? { bytes, crc32: checksumCrc32(bytes), release } : { bytes, contentMd5: md5(bytes, 'base64'), release }
  }
  const send = (readPart: PartReader) => sendParts(connection, key, size, headers, partChecksum, readPart)
  if (!('file' in body)) {
    const etag = await send(async (start, length) => hashed(body.subarray(start, start + length)))
    return { etag, md5: whole.digest('hex') }
  }
  const upload = buffers.begin()
  const file = await openSized(body.file, size)
  try {
    const etag = await send(async (start, length) => {
      const buffer = await buffers.take(upload)
      const bytes = buffer.subarray(0, length)
      try {
        await readInto(file, body.file, bytes, start)
      } catch (error) {
        buffers.giveBack(buffer)
        throw error
      }
      return hashed(bytes, () => buffers.giveBack(buffer))
    })
    return { etag, md5: whole.digest('hex') }
  } finally {
    await file.close()
  }
}

/** Sends a body of `size` bytes as one multipart upload, reading its parts through `readPart`. A failed upload is aborted, so that no parts are left to pay for. */
async function sendParts(
  { call, bucket, display }: S3Connection,
  key: string,
  size: number,
  headers: PutOptions,
  partChecksum: PartChecksum,
  readPart: PartReader,
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
        // Each part then carries its CRC32, which S3 checks, and the completion names them all.
        ChecksumAlgorithm: partChecksum === 'crc32' ? 'CRC32' : undefined,
      }),
    ),
  )
  if (!UploadId) throw new Error(`${display()} started a multipart upload of ${key} without an UploadId`)
  try {
    let turn: Promise<unknown> = Promise.resolve()
    const sent: CompletedPart[] = []
    const parts = Array.from({ length: Math.ceil(size / PART_SIZE) }, (_, index) => index)
    // One more part than there are buffers: an upload that holds them all then has a part waiting
    // for the next one given back, ahead of the uploads that began later.
    await forEachLimited(parts, PART_QUEUE + 1, async (index) => {
      // Read in turn, so that the whole body's MD5 takes the parts in order.
      const reading = turn.then(() => readPart(index * PART_SIZE, Math.min(PART_SIZE, size - index * PART_SIZE)))
      turn = reading.catch(() => undefined)
      const part = await reading
      try {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html
        const { ETag } = await step(call, (c) =>
          c.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: key,
              UploadId,
              PartNumber: index + 1,
              Body: part.bytes,
              ContentLength: part.bytes.byteLength,
              ChecksumCRC32: part.crc32,
              ContentMD5: part.contentMd5,
            }),
          ),
        )
        sent[index] = { ETag: ETag!, PartNumber: index + 1, ChecksumCRC32: part.crc32 }
      } finally {
        part.release()
      }
    })
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
    const { ETag } = await step(call, (c) =>
      c.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: sent },
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
