import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TIMEOUTS } from '../../src/core/model/options'
import { connectS3 } from '../../src/stores/s3-connection'
import type { S3Error } from '../../src/stores/s3-transient'

/** A loopback server: a listing whose XML is cut short, an object, or a 403 naming the bucket's region. */
const server = http.createServer((request, response) => {
  request.resume().once('end', () => {
    if (request.url?.includes('list-type=2')) response.writeHead(200, { 'content-type': 'application/xml' }).end('<ListBucketResult><Contents><Key>a')
    else if (request.url?.includes('/denied')) response.writeHead(403, { 'x-amz-bucket-region': 'eu-west-3' }).end('<Error><Code>AccessDenied</Code></Error>')
    else response.writeHead(200, { etag: '"e"', 'content-length': '2' }).end('hi')
  })
})
let endpoint = ''
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

/** `request` through a connection to the loopback server; its error as the SDK throws it, before the store clarifies it. */
async function through<T>(request: (client: S3Client) => Promise<T>): Promise<T> {
  const connection = connectS3(
    's3://bucket',
    { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret' } },
    DEFAULT_TIMEOUTS,
  )
  try {
    return await connection.call((client) => request(client).catch((error: unknown) => error as T))
  } finally {
    await connection.close()
  }
}

describe("the S3 client's serde middleware", () => {
  it('hands the protocol the request context over the client config, not a copy of the config', async () => {
    const contexts: object[] = []
    const body = await through(async (client) => {
      const protocol = client.config.protocol as unknown as Record<'serializeRequest' | 'deserializeResponse', (...args: unknown[]) => unknown>
      const { serializeRequest, deserializeResponse } = protocol
      protocol.serializeRequest = function (this: unknown, ...args) {
        contexts.push(args[2] as object)
        return serializeRequest.apply(this, args)
      }
      protocol.deserializeResponse = function (this: unknown, ...args) {
        contexts.push(args[1] as object)
        return deserializeResponse.apply(this, args)
      }
      const { Body } = await client.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'k' }))
      return Body?.transformToString()
    })
    expect(body).toBe('hi')
    expect(contexts).toHaveLength(2)
    for (const context of contexts) expect(Object.hasOwn(context, 'requestHandler')).toBe(false)
  })

  it('still marks an answer it cannot read as the SDK does: its status in $metadata, the response in $response', async () => {
    const error = (await through((client) => client.send(new ListObjectsV2Command({ Bucket: 'bucket' })))) as S3Error & { $response?: unknown }
    expect(error).toBeInstanceOf(Error)
    expect(error.$metadata?.httpStatusCode).toBe(200)
    expect(error.$response).toBeDefined()
  })

  it("keeps the response on a service error, where the region redirect reads the bucket's region", async () => {
    const error = (await through((client) => client.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'denied' })))) as S3Error & {
      $response?: { headers: Record<string, string> }
    }
    expect(error.name).toBe('AccessDenied')
    expect(error.$metadata?.httpStatusCode).toBe(403)
    expect(error.$response?.headers['x-amz-bucket-region']).toBe('eu-west-3')
  })
})
