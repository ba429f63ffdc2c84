import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TIMEOUTS } from '../../src/core/model/options'
import { connectS3 } from '../../src/stores/s3-connection'
import { isTransientS3, type S3Error } from '../../src/stores/s3-transient'

/** An in-process HTTP server that keeps each request's headers and answers with `status`. */
const received: http.IncomingHttpHeaders[] = []
let status = 200
const server = http.createServer((request, response) => {
  received.push(request.headers)
  request.resume().once('end', () => {
    response.writeHead(status, { etag: '"e"', 'content-type': 'application/xml' })
    response.end(status === 200 ? '' : '<Error><Code>ServiceUnavailable</Code><Message>busy</Message></Error>')
  })
})
let endpoint = ''
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

const put = async (key: string) => {
  const connection = connectS3(
    's3://bucket',
    { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret' } },
    DEFAULT_TIMEOUTS,
  )
  try {
    return await connection.call((client) => client.send(new PutObjectCommand({ Bucket: 'bucket', Key: key, Body: 'x' })))
  } finally {
    await connection.close()
  }
}

describe('the S3 client without the SDK retry middleware (it never retries: maxAttempts 1)', () => {
  it('sends a request signed, without the per-attempt headers that middleware stamps', async () => {
    received.length = 0
    status = 200
    await put('a')
    expect(received).toHaveLength(1)
    expect(received[0]?.authorization).toMatch(/^AWS4-HMAC-SHA256 /)
    expect(received[0]).not.toHaveProperty('amz-sdk-invocation-id')
    expect(received[0]).not.toHaveProperty('amz-sdk-request')
  })

  it('hands a 503 on once, with its status and marked transient, for core to retry', async () => {
    received.length = 0
    status = 503
    const error = (await put('b').catch((caught: unknown) => caught)) as S3Error
    expect(received).toHaveLength(1)
    expect(error.$metadata?.httpStatusCode).toBe(503)
    expect(isTransientS3(error)).toBe(true)
  })
})
