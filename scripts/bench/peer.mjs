// The bench's peers, each run by the bench as a process of its own:
//   node peer.mjs s3-put <dir> <bucket> <key-prefix> <concurrency>   PutObject per file, `concurrency` at a time
//   node peer.mjs http-put <dir> <bucket> <key-prefix> <concurrency> the same as bare SigV4 PUTs over node:http
//   node peer.mjs valkey-set <dir> <port> <key-prefix>               one awaited SET per file
//   node peer.mjs valkey-pipeline <dir> <port> <key-prefix>          SETs sent in pipelines of up to 1,000
// No planning, headers, retries or entrypoint ordering: the cost of moving the bytes and nothing else.
import { createHash, createHmac } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import http from 'node:http'
import { join } from 'node:path'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { Redis } from 'iovalkey'
import { LOOPBACK } from './servers.mjs'
import { listFiles } from './synthetic.mjs'

const PIPELINE_FILES = 1000
const PIPELINE_BYTES = 32 * 1024 * 1024

/** Runs `work` over `items`, `limit` at a time. */
async function eachLimited(items, limit, work) {
  let next = 0
  const worker = async () => {
    while (next < items.length) await work(items[next++])
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

async function s3Put(dir, bucket, prefix, concurrency) {
  // Endpoint, region and credentials come from the environment (AWS_ENDPOINT_URL_S3 and friends), as for push-cache.
  const client = new S3Client({ forcePathStyle: true })
  await eachLimited(await listFiles(dir), Number(concurrency), async (relpath) => {
    const body = await readFile(join(dir, relpath))
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + relpath, Body: body, ContentLength: body.byteLength }))
  })
  client.destroy()
}

/**
 * PUT per file signed with SigV4 over node:http, path-style: the transport push-cache uses, without
 * its planning, headers, deadlines or retries. Each request is signed from scratch.
 */
async function httpPut(dir, bucket, prefix, concurrency) {
  const endpoint = new URL(process.env.AWS_ENDPOINT_URL_S3)
  const { AWS_REGION: region, AWS_ACCESS_KEY_ID: keyId, AWS_SECRET_ACCESS_KEY: secret } = process.env
  const agent = new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) })
  const uriEncode = (text) => encodeURIComponent(text).replace(/[!'()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`)
  const hex = (hash) => hash.digest('hex')
  await eachLimited(await listFiles(dir), Number(concurrency), async (relpath) => {
    const body = await readFile(join(dir, relpath))
    const path = `/${bucket}/${`${prefix}${relpath}`.split('/').map(uriEncode).join('/')}`
    const date = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '')
    const headers = { host: endpoint.host, 'x-amz-content-sha256': hex(createHash('sha256').update(body)), 'x-amz-date': date }
    const sorted = Object.keys(headers).sort()
    const names = sorted.join(';')
    const request = ['PUT', path, '', ...sorted.map((name) => `${name}:${headers[name]}`), '', names, headers['x-amz-content-sha256']]
    const scope = `${date.slice(0, 8)}/${region}/s3/aws4_request`
    let key = `AWS4${secret}`
    for (const part of [date.slice(0, 8), region, 's3', 'aws4_request']) key = createHmac('sha256', key).update(part).digest()
    const toSign = `AWS4-HMAC-SHA256\n${date}\n${scope}\n${hex(createHash('sha256').update(request.join('\n')))}`
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${keyId}/${scope}, SignedHeaders=${names}, Signature=${hex(createHmac('sha256', key).update(toSign))}`
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
    await new Promise((resolve, reject) => {
      const put = http.request({ agent, host: endpoint.hostname, port: endpoint.port, method: 'PUT', path, headers }, (response) => {
        response.resume().once('end', () => (response.statusCode < 300 ? resolve() : reject(new Error(`PUT ${path}: HTTP ${response.statusCode}`))))
      })
      put.once('error', reject).end(body)
    })
  })
  agent.destroy()
}

async function withValkey(port, work) {
  const valkey = new Redis({ host: LOOPBACK, port: Number(port), commandTimeout: 60_000, maxRetriesPerRequest: 1 })
  try {
    await work(valkey)
  } finally {
    valkey.disconnect()
  }
}

async function valkeySet(dir, port, prefix) {
  await withValkey(port, async (valkey) => {
    // https://valkey.io/commands/set/
    for (const relpath of await listFiles(dir)) await valkey.set(prefix + relpath, await readFile(join(dir, relpath)))
  })
}

async function valkeyPipeline(dir, port, prefix) {
  await withValkey(port, async (valkey) => {
    let pipeline = valkey.pipeline()
    let bytes = 0
    const send = async () => {
      for (const [error] of await pipeline.exec()) if (error) throw error
      pipeline = valkey.pipeline()
      bytes = 0
    }
    for (const relpath of await listFiles(dir)) {
      const value = await readFile(join(dir, relpath))
      pipeline.set(prefix + relpath, value)
      bytes += value.byteLength
      if (pipeline.length >= PIPELINE_FILES || bytes >= PIPELINE_BYTES) await send()
    }
    if (pipeline.length > 0) await send()
  })
}

const peers = { 's3-put': s3Put, 'http-put': httpPut, 'valkey-set': valkeySet, 'valkey-pipeline': valkeyPipeline }
const [name, ...args] = process.argv.slice(2)
if (!peers[name]) {
  console.error(`Unknown peer ${name}; one of ${Object.keys(peers).join(', ')}`)
  process.exit(2)
}
await peers[name](...args)
