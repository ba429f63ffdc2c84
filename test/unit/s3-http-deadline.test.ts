import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRequestHandler, QuickestAnswer } from '../../src/stores/s3-http'

/**
 * An in-process server: `/silent` never answers, `/stall` sends its headers and a first byte, then
 * nothing, `/late` answers after `LATE_MS`, `/now` at once.
 */
const LATE_MS = 80
const server = http.createServer((request, response) => {
  request.resume()
  if (request.url === '/late') setTimeout(() => response.end('late'), LATE_MS)
  if (request.url === '/now') response.end('now')
  if (request.url === '/stall') {
    response.writeHead(200, { 'content-length': 10 })
    response.write('x')
  }
})
let port = 0
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
})
afterAll(() => {
  server.closeAllConnections()
  return new Promise<void>((resolve) => server.close(() => resolve()))
})

const REQUEST_TIMEOUT = 300
const get = (path: string, quickest = new QuickestAnswer()) =>
  createRequestHandler('the test server', { connectTimeout: 1000, requestTimeout: REQUEST_TIMEOUT }, 4, quickest).then((handler) =>
    handler.handle({ protocol: 'http:', hostname: '127.0.0.1', port, method: 'GET', path, headers: {}, query: {} } as never),
  )

describe('the S3 request handler bounds each request, from sending it to the last byte of its answer', () => {
  it('fails a request that got no answer, naming the store and the timeout', async () => {
    const started = Date.now()
    await expect(get('/silent')).rejects.toThrow(/the test server.*GET \/silent got no complete answer/)
    expect(Date.now() - started).toBeGreaterThanOrEqual(REQUEST_TIMEOUT - 20)
  })

  it('fails the body of an answer that stalled after its headers', async () => {
    const { response } = await get('/stall')
    const body = response.body as Readable
    const read = (async () => {
      for await (const _chunk of body);
    })()
    await expect(read).rejects.toThrow(/GET \/stall got no complete answer/)
  })

  it('still hears the abort signal of its caller', async () => {
    const handler = await createRequestHandler('the test server', { connectTimeout: 1000, requestTimeout: 10_000 }, 4, new QuickestAnswer())
    const caller = new AbortController()
    const request = handler.handle({ protocol: 'http:', hostname: '127.0.0.1', port, method: 'GET', path: '/silent', headers: {}, query: {} } as never, {
      abortSignal: caller.signal,
    })
    setTimeout(() => caller.abort(new Error('the caller gave up')), 50)
    await expect(request).rejects.toMatchObject({ name: 'AbortError' })
  })
})

describe('the S3 request handler times its answers', () => {
  it('keeps the quickest, from sending a request to its answer', async () => {
    const quickest = new QuickestAnswer()
    await (await get('/late', quickest)).response.body.resume()
    expect(quickest.ms).toBeGreaterThanOrEqual(LATE_MS - 5)
    await (await get('/now', quickest)).response.body.resume()
    expect(quickest.ms).toBeLessThan(LATE_MS - 5)
    const now = quickest.ms
    await (await get('/late', quickest)).response.body.resume()
    expect(quickest.ms).toBe(now)
  })
})
