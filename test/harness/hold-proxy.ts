import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { onTestFinished } from 'vitest'
import { forward } from '../helpers/forward'
import { createGate, type Gate, keyKind, type Operation } from './holds'

/** An S3 endpoint in front of a real one whose requests pass one gate: what a CLI actor (another process) is given as its endpoint. */
export interface HoldProxy {
  /** Path-style endpoint for `AWS_ENDPOINT_URL_S3`. */
  endpoint: string
  /** What the requests pass now: a scheduler gives each window a fresh one. */
  gate: Gate
  /** The app whose keys are classified (a world per window has its own). */
  app: string
}

/** The operation an S3 request performs, and the key (or listing prefix) it is about. */
function s3Request(method: string, url: URL): { operation: Operation; key: string } {
  const [, , ...rest] = url.pathname.split('/')
  const key = decodeURIComponent(rest.join('/'))
  const query = url.searchParams
  if (method === 'GET' && key === '') return { operation: 'list', key: query.get('prefix') ?? '' }
  if (method === 'GET' || method === 'HEAD') return { operation: 'read', key }
  if (method === 'DELETE') return { operation: 'delete', key }
  // POST ?delete is the batch delete; its keys are in the body, which is only forwarded.
  if (method === 'POST' && query.has('delete')) return { operation: 'delete', key: '' }
  return { operation: 'put', key } // PUT, and the POSTs of a multipart upload
}

/**
 * A loopback HTTP proxy to `upstream` (moto) for one actor of `app` on a flat store: each request is
 * classified (`read:entrypoint`, `put:manifest`…), then held or failed as the gate says, before it
 * is forwarded or before its answer is sent back. Closed when the test that started it ends.
 */
export async function startHoldProxy(upstream: string, app: string, entrypoints?: readonly string[]): Promise<HoldProxy> {
  const proxy: HoldProxy = { endpoint: '', gate: createGate(), app }
  const target = new URL(upstream)
  const agent = new http.Agent({ keepAlive: true })
  const server = http.createServer(async (req, res) => {
    const { operation, key } = s3Request(req.method ?? 'GET', new URL(req.url ?? '/', 'http://proxy'))
    const type = `${operation}:${keyKind(key, proxy.app, 'flat', entrypoints)}` as const
    try {
      await proxy.gate.pass(type, 'before')
    } catch (error) {
      req.resume()
      res.writeHead(503, { 'content-type': 'application/xml' })
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>${(error as Error).message}</Message></Error>`)
      return
    }
    // A client killed while its request was held never sent it: it must not land after its death.
    if (req.socket.destroyed) return
    forward(req, res, target, agent, () => proxy.gate.pass(type, 'after'))
  })
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready))
  onTestFinished(async () => {
    proxy.gate.releaseAll()
    server.closeAllConnections()
    agent.destroy()
    await new Promise((closed) => server.close(closed))
  })
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return proxy
}
