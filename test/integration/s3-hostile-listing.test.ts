import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, expect, it } from 'vitest'
import { createS3Store } from '../../src/stores/s3'

/** An S3-compatible server that answers every listing with one key it failed to URL-encode. */
const server = createServer((_, response) => {
  response.writeHead(200, { 'content-type': 'application/xml' }).end(
    `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>data/shop/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>data/shop/100%zz.js</Key><Size>3</Size><ETag>"x"</ETag></Contents></ListBucketResult>`,
  )
})
await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready))
afterAll(() => new Promise<void>((closed) => server.close(() => closed())))

it('a listed key that is not URL-encoded as asked names the server and the key, not a bare URIError', async () => {
  const store = createS3Store('s3://bucket', {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  })
  try {
    const listing = async () => {
      for await (const _ of store.list('data/shop/'));
    }
    await expect(listing()).rejects.toThrow(/listed a key that is not URL-encoded as asked \(EncodingType=url\): "data\/shop\/100%zz\.js"/)
  } finally {
    await store.close()
  }
})
