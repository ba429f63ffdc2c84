import { randomBytes } from 'node:crypto'
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, paginateListObjectsV2, S3Client } from '@aws-sdk/client-s3'
import { inject } from 'vitest'
import type { S3Options } from '../../src/options'
import type { FaultRule, RecordedRequest } from '../setup/s3-server'

/** Identifies this test file's faults, so that `clearFaults` leaves other files' alone. */
const FAULT_OWNER = `${process.pid}-${randomBytes(4).toString('hex')}`

function s3Env(): { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } } {
  const { endpoint, region, credentials } = inject('s3')
  return { endpoint, region, credentials }
}

/** How a user points the CLI at an S3-compatible server: the standard AWS_* variables, no secret on the command line. */
export function s3CliEnv(): Record<string, string> {
  const { endpoint, region, credentials } = s3Env()
  return {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
  }
}

export function s3StoreUrl(bucket: string, root?: string): string {
  return root ? `s3://${bucket}/${root}` : `s3://${bucket}`
}

/** What a store under test needs to reach the server through the recording proxy. */
export function s3StoreOptions(): S3Options {
  return s3Env()
}

let client: S3Client | undefined
/** Talks to the server directly: what helpers do is neither recorded nor faulted. */
function direct(): S3Client {
  const { upstream, region, credentials, checksums } = inject('s3')
  const whenRequired = checksums === 'when_required' ? 'WHEN_REQUIRED' : undefined
  client ??= new S3Client({
    endpoint: upstream,
    region,
    credentials,
    forcePathStyle: true,
    requestChecksumCalculation: whenRequired,
    responseChecksumValidation: whenRequired,
  })
  return client
}

/** A fresh bucket, so that tests (and test files running in parallel) never see each other's objects. */
export async function createBucket(name = `t-${randomBytes(6).toString('hex')}`): Promise<string> {
  await direct().send(new CreateBucketCommand({ Bucket: name }))
  return name
}

export async function listObjects(bucket: string, prefix = ''): Promise<{ key: string; size: number }[]> {
  const objects: { key: string; size: number }[] = []
  for await (const page of paginateListObjectsV2({ client: direct() }, { Bucket: bucket, Prefix: prefix }))
    for (const object of page.Contents ?? []) objects.push({ key: object.Key!, size: object.Size ?? 0 })
  return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}

export async function getObject(
  bucket: string,
  key: string,
): Promise<{ body: Buffer; contentType?: string; cacheControl?: string; metadata: Record<string, string> } | undefined> {
  try {
    const output = await direct().send(new GetObjectCommand({ Bucket: bucket, Key: key }))
    return {
      body: Buffer.from(await output.Body!.transformToByteArray()),
      contentType: output.ContentType,
      cacheControl: output.CacheControl,
      metadata: output.Metadata ?? {},
    }
  } catch (error) {
    if ((error as Error).name === 'NoSuchKey') return undefined
    throw error
  }
}

export async function putObject(bucket: string, key: string, body: string | Buffer): Promise<void> {
  await direct().send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }))
}

/** The store's requests on objects of `bucket` (not on the bucket itself), in arrival order. */
export async function requestLog(bucket: string): Promise<Omit<RecordedRequest, 'bucket'>[]> {
  const requests = await control<RecordedRequest[]>('GET', `/log?bucket=${encodeURIComponent(bucket)}`)
  return requests.filter((request) => request.key !== '').map(({ bucket: _, ...request }) => request)
}

/**
 * Makes the proxy answer matching requests with `status` (default 503) and S3 error `code`, or reset their socket,
 * `times` times (default: always). A string `key` matches exactly, a RegExp by its source.
 */
export async function injectFault(rule: {
  bucket: string
  method?: string
  key?: string | RegExp
  status?: number
  code?: string
  bucketRegion?: string
  reset?: boolean
  times?: number
}): Promise<void> {
  const { key, ...rest } = rule
  const fault: FaultRule = { ...rest, owner: FAULT_OWNER, ...(key instanceof RegExp ? { keyPattern: key.source } : { key }) }
  await control('POST', '/faults', fault)
}

/** Removes the faults this test file set. */
export async function clearFaults(): Promise<void> {
  await control('DELETE', `/faults?owner=${FAULT_OWNER}`)
}

async function control<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${inject('s3').control}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) })
  if (!response.ok) throw new Error(`test proxy: ${method} ${path} answered ${response.status} ${await response.text()}`)
  return (response.status === 204 ? undefined : await response.json()) as T
}
