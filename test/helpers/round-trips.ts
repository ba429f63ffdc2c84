import http from 'node:http'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { onTestFinished } from 'vitest'
import type { Store, StoreEntry } from '../../src/core/store/store'
import { createS3Store } from '../../src/stores/s3'
import { forward, listenForTest } from './forward'
import { tempDir, writeTree } from './fs'
import { createBucket, s3StoreOptions, s3StoreUrl } from './s3'

/**
 * The sequential round trips of a run: a request started after another one was answered counts
 * one more than it, requests in flight together count once. The deepest chain is what a long link
 * multiplies by its round-trip time, whatever the number of requests.
 */
export interface TripDepth {
  /** Every request so far: its depth, then what it was. */
  readonly log: string[]
  /** The longest chain of requests, each sent after the one before it was answered. */
  deepest(): number
  /**
   * Marks a request sent; the function returned marks it answered. Requests of one `chain` (the
   * pages of one listing) wait for the one before them only: each that `continues` it counts one
   * more than the one before; one that does not (a first page: the same prefix listed again later) starts it anew.
   */
  start(what: string, chain?: string, continues?: boolean): () => void
  reset(): void
}

export function createTripDepth(): TripDepth {
  let answered = 0
  let deepest = 0
  const log: string[] = []
  const chains = new Map<string, number>()
  return {
    log,
    deepest: () => deepest,
    start(what, chain, continues = false) {
      const before = chain === undefined || !continues ? undefined : chains.get(chain)
      const depth = (before ?? answered) + 1
      if (chain !== undefined) chains.set(chain, depth)
      deepest = Math.max(deepest, depth)
      log.push(`${depth} ${what}`)
      return () => {
        answered = Math.max(answered, depth)
      }
    },
    reset() {
      answered = 0
      deepest = 0
      log.length = 0
      chains.clear()
    },
  }
}

/**
 * An HTTP proxy in front of an S3 endpoint that delays every request by `delayMs` (a long link) and
 * counts its round trips, listing pages included. Closed when the test that started it ends.
 */
async function startTripProxy(upstream: string, delayMs: number): Promise<{ endpoint: string; trips: TripDepth }> {
  const trips = createTripDepth()
  const target = new URL(upstream)
  const agent = new http.Agent({ keepAlive: true })
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy')
    // A listing's next page waits for the page before it, not for whatever else was answered meanwhile.
    const prefix = url.searchParams.get('prefix')
    const next = url.searchParams.has('continuation-token')
    const page = next ? 'next page' : 'first page'
    // Ranges of one prefix listed at once (`start-after`, sent with each of their pages) are listings of their own.
    const after = url.searchParams.get('start-after')
    const listing = `list ${prefix}${after === null ? '' : ` after ${after}`}`
    const chain = prefix === null ? undefined : listing
    const done = trips.start(prefix === null ? `${req.method} ${decodeURIComponent(url.pathname)}` : `${listing} (${page})`, chain, next)
    res.once('close', done)
    await sleep(delayMs)
    forward(req, res, target, agent)
  })
  return { endpoint: await listenForTest(server, agent), trips }
}

/**
 * A new bucket, a store on it straight to S3 (to set the stage) and one through a trip proxy that
 * adds `delayMs` (what is counted). Both closed when the test ends.
 */
export async function s3StoresBehindTripProxy(delayMs = 20): Promise<{ bucket: string; plain: Store; counted: Store; trips: TripDepth }> {
  const bucket = await createBucket()
  const proxy = await startTripProxy(s3StoreOptions().endpoint!, delayMs)
  const plain = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
  const counted = createS3Store(s3StoreUrl(bucket), { ...s3StoreOptions(), endpoint: proxy.endpoint })
  onTestFinished(() => Promise.all([plain.close(), counted.close()]).then(() => {}))
  return { bucket, plain, counted, trips: proxy.trips }
}

/**
 * `store` with each call counted as one round trip (a listing as one, whatever its pages): for the
 * stores the HTTP proxy cannot stand in front of (Valkey, a directory).
 */
export function tripCountingStore(store: Store, trips: TripDepth): Store {
  const counted = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
    const done = trips.start(what)
    try {
      return await request()
    } finally {
      done()
    }
  }
  const wrapped: Store = {
    ...store,
    put: (key, body, options) => counted(`put ${key}`, () => store.put(key, body, options)),
    read: (key): Promise<Readable | undefined> => counted(`read ${key}`, () => store.read(key)),
    async *list(prefix: string): AsyncIterable<StoreEntry> {
      const done = trips.start(`list ${prefix}`)
      try {
        yield* store.list(prefix)
      } finally {
        done()
      }
    },
    delete: (keys, options) => counted(`delete ${keys[0]}${keys.length > 1 ? ` (+${keys.length - 1})` : ''}`, () => store.delete(keys, options)),
    close: () => store.close(),
  }
  if (store.exists) wrapped.exists = (keys) => counted(`exists ${keys.length} keys`, () => store.exists!(keys))
  if (store.persist) wrapped.persist = (keys) => counted(`persist ${keys.length} keys`, () => store.persist!(keys))
  return wrapped
}

/**
 * A TCP proxy in front of a Valkey server that holds each reply `delayMs` and counts the client's
 * bursts: what it sends at once is one burst, and what it sends after waiting for a reply comes at
 * least `delayMs` later, a new one. The bursts are the sequential round trips of what went through.
 */
export async function startBurstProxy(target: { host: string; port: number }, delayMs: number): Promise<{ port: number; bursts(): number }> {
  let bursts = 0
  let lastSent = Number.NEGATIVE_INFINITY
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket)).on('error', () => {})
    }
    client.on('data', (chunk) => {
      if (performance.now() - lastSent > delayMs / 2) bursts++
      lastSent = performance.now()
      upstream.write(chunk)
    })
    upstream.on('data', (chunk) => setTimeout(() => client.write(chunk), delayMs))
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
  })
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready))
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((closed) => server.close(closed))
  })
  return { port: (server.address() as AddressInfo).port, bursts: () => bursts }
}

/** `store`, counting its puts and reads under way at once (from the call to its answer): `most()` is the highest count seen. */
export function inFlightCountingStore(store: Store): { store: Store; most(): number } {
  let now = 0
  let most = 0
  const counted = async <T>(request: () => Promise<T>): Promise<T> => {
    most = Math.max(most, ++now)
    try {
      return await request()
    } finally {
      now--
    }
  }
  const wrapped: Store = {
    ...store,
    put: (key, body, options) => counted(() => store.put(key, body, options)),
    read: (key) => counted(() => store.read(key)),
  }
  return { store: wrapped, most: () => most }
}

/** A build of `chunks` small files, an index and an entrypoint, every file different in each `version`. */
export async function versionedBuild(chunks: number, version: number): Promise<string> {
  const files: Record<string, string> = { 'index.html': `<!doctype html>${version}`, 'fed-mods.json': `{"inventory":{"v":${version}}}` }
  for (let i = 0; i < chunks; i++) files[`js/chunk-${i}.js`] = `console.log(${i}, ${version})`
  return writeTree(await tempDir(), files)
}
