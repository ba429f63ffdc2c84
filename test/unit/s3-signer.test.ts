import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { signerPerScheme, userAgentOnce } from '../../src/stores/s3-connection'

/** A loopback HTTP server that keeps each request's headers and answers 200. */
const sent: { headers: http.IncomingHttpHeaders }[] = []
const server = http.createServer((request, response) => {
  sent.push({ headers: request.headers })
  request.resume().once('end', () => response.writeHead(200, { etag: '"e"' }).end())
})
let endpoint = ''
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

/** An S3 client to that server, counting the signers it makes. */
function recordingClient() {
  sent.length = 0
  const client = new S3Client({
    region: 'eu-west-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
    maxAttempts: 1,
  })
  let made = 0
  const make = client.config.signer
  client.config.signer = signerPerScheme((scheme) => {
    made++
    return make(scheme)
  })
  const put = (key: string) => client.send(new PutObjectCommand({ Bucket: 'b', Key: key, Body: 'x' }))
  return { client, sent, put, made: () => made }
}

describe('the S3 client keeps one signer per auth scheme', () => {
  it('signs every request with the signer made for the first', async () => {
    const { sent, put, made } = recordingClient()
    await Promise.all(['a', 'b', 'c'].map(put))
    expect(made()).toBe(1)
    const signatures = sent.map(({ headers }) => /Signature=(\w+)/.exec(headers.authorization ?? '')?.[1])
    expect(new Set(signatures).size).toBe(3)
    expect(sent[0]?.headers.authorization).toContain('/eu-west-1/s3/aws4_request')
  })

  it('still signs with the corrected clock once the SDK learnt a skew from S3', async () => {
    const { client, sent, put } = recordingClient()
    await put('a')
    client.config.systemClockOffset = -20 * 60_000
    await put('b')
    const dated = sent.map(({ headers }) =>
      Date.parse(String(headers['x-amz-date']).replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z')),
    )
    expect((dated[0] ?? 0) - (dated[1] ?? 0)).toBeGreaterThan(19 * 60_000)
  })

  it('makes one signer per region, and makes again a signer that failed to be made', async () => {
    let made = 0
    const signer = signerPerScheme(async (scheme) => {
      made++
      if (made === 1) throw new Error('no region yet')
      return { sign: async (request: unknown) => request, scheme } as never
    })
    const eu = { name: 'sigv4', signingName: 's3', signingRegion: 'eu-west-1', properties: {} }
    await expect(signer(eu)).rejects.toThrow('no region yet')
    await Promise.resolve()
    const first = await signer(eu)
    expect(await signer({ ...eu })).toBe(first)
    expect(await signer({ ...eu, signingRegion: 'us-east-1' })).not.toBe(first)
    expect(made).toBe(3)
  })
})

describe('the S3 client builds the fixed part of its user agent once', () => {
  it('sends the same user agent on every request, its sections built for the first', async () => {
    const { client, sent, put } = recordingClient()
    let built = 0
    const make = client.config.defaultUserAgentProvider
    client.config.defaultUserAgentProvider = userAgentOnce(() => {
      built++
      return make()
    })
    await put('a')
    await Promise.all(['b', 'c'].map(put))
    expect(built).toBe(1)
    expect(new Set(sent.map(({ headers }) => headers['user-agent'])).size).toBe(1)
    expect(sent[0]?.headers['user-agent']).toMatch(/^aws-sdk-js\/\S+ ua\/2\.1 os\/\S+ lang\/js md\/nodejs#\S+ api\/s3#\S+ m\//)
  })
})
