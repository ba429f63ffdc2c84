import { DeleteObjectCommand, DeleteObjectsCommand, type DeleteObjectsCommandOutput } from '@aws-sdk/client-s3'
import type { DeleteOptions } from '../core/store/store'
import { forEachLimited } from '../core/util/concurrency'
import { quote, type S3Connection } from './s3-connection'
import { isTransientS3Code, type S3Error } from './s3-transient'

/** DeleteObjects takes at most 1000 keys. */
const DELETE_BATCH = 1000
const SINGLE_DELETE_CONCURRENCY = 8
/** Statuses with which a server says it does not support or accept DeleteObjects as sent. */
const BATCH_DELETE_REJECTED = new Set([400, 405, 411, 501])

/**
 * Deletes in batches of 1000 (DeleteObjects), or one by one on a server that refuses batches (it is
 * asked once); a conditional delete goes one key at a time with its If-Match.
 */
export function createDeleter({ call, bucket, root, display: displayOf }: S3Connection) {
  let batchDeleteRejected = false
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
        new Error(`Could not delete ${errors.length} of ${keys.length} keys from ${displayOf()}: ${listed.join(', ')}${errors.length > 3 ? ', …' : ''}`),
        { code: errors[0]!.Code, transient: isTransientS3Code(errors[0]!.Code) },
      )
    }
  }

  return async (keys: readonly string[], { ifMatch }: DeleteOptions = {}): Promise<void> => {
    if (ifMatch !== undefined) {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html (If-Match: general purpose buckets since 2024)
      for (const key of keys) await call((c) => c.send(new DeleteObjectCommand({ Bucket: bucket, Key: root + key, IfMatch: quote(ifMatch) })), key)
      return
    }
    for (let start = 0; start < keys.length; start += DELETE_BATCH) await deleteBatch(keys.slice(start, start + DELETE_BATCH))
  }
}
