import http from 'node:http'
import https from 'node:https'
import type { Readable } from 'node:stream'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { timedOut } from '../core/model/errors'
import type { StoreTimeouts } from '../core/model/options'

type HandleArguments = Parameters<NodeHttpHandler['handle']>

/**
 * The SDK's handler with one deadline per HTTP request, from sending it (body included) to the last
 * byte of its answer. The SDK's own timeouts stop counting at the response headers, so a body that
 * stalls or trickles (a download, the XML of a listing) would hold the push for ever.
 */
class DeadlineHttpHandler extends NodeHttpHandler {
  constructor(
    private readonly display: string,
    private readonly requestTimeout: number,
    private readonly quickest: QuickestAnswer,
    options: ConstructorParameters<typeof NodeHttpHandler>[0],
  ) {
    super(options)
  }

  override async handle(request: HandleArguments[0], options: HandleArguments[1] = {}) {
    const deadline = new DeadlineSignal()
    let body: Readable | undefined
    // Before the headers the request is aborted; after them the body is destroyed, which fails
    // whoever reads it (the SDK's parser, or pop's download). The error is made only then: its
    // stack trace costs more than the rest of a request.
    const timer = setTimeout(() => {
      const expired = timedOut(this.display, `${request.method} ${request.path} got no complete answer`, 'request', this.requestTimeout)
      if (body) body.destroy(expired)
      else deadline.abort(expired)
    }, this.requestTimeout).unref()
    const caller = options.abortSignal as AbortSignal | undefined
    const signal = caller ? AbortSignal.any([deadline.asAbortSignal(), caller]) : deadline
    const sent = performance.now()
    try {
      const result = await super.handle(request, { ...options, abortSignal: signal })
      this.quickest.heard(performance.now() - sent)
      body = result.response.body as Readable
      body.once('close', () => clearTimeout(timer))
      return result
    } catch (error) {
      clearTimeout(timer)
      throw deadline.aborted ? deadline.reason : error
    }
  }
}

/**
 * The quickest answer of all requests so far, from sending one to its response headers: the link's
 * round trip and the least the server takes. The minimum passes over the answers that also waited
 * for a new connection, a large body or a busy server.
 */
export class QuickestAnswer {
  ms: number | undefined

  heard(ms: number): void {
    if (this.ms === undefined || ms < this.ms) this.ms = ms
  }
}

/**
 * The deadline of one request, as the SDK's handler takes a signal: `aborted` and `onabort` (the
 * handler sets it). Without an EventTarget it costs a tenth of an AbortController, and the handler
 * adds and removes no listener for it.
 */
class DeadlineSignal {
  aborted = false
  reason: unknown
  onabort: (() => void) | null = null

  abort(reason: unknown): void {
    this.aborted = true
    this.reason = reason
    this.onabort?.()
  }

  /** A standard signal that follows this one, to combine with a caller's (rare: no store call passes one). */
  asAbortSignal(): AbortSignal {
    const controller = new AbortController()
    this.onabort = () => controller.abort(this.reason)
    return controller.signal
  }
}

/** The proxy variables the `aws` CLI and proxy-from-env read (either case); NO_PROXY only narrows them. */
const PROXY_VARIABLES = ['https_proxy', 'http_proxy', 'all_proxy']

const proxyConfigured = (env: NodeJS.ProcessEnv) => PROXY_VARIABLES.some((name) => env[name] || env[name.toUpperCase()])

/**
 * Keep-alive agents with room for `sockets` requests at once. Behind HTTPS_PROXY/HTTP_PROXY
 * (NO_PROXY honoured) they are proxy-agent's, loaded only then: it picks the proxy per request as
 * the `aws` CLI does, and falls back to plain keep-alive agents for hosts NO_PROXY exempts.
 */
async function agents(sockets: number): Promise<{ httpAgent: http.Agent; httpsAgent: http.Agent }> {
  const options = { keepAlive: true, maxSockets: sockets }
  const direct = { httpAgent: new http.Agent(options), httpsAgent: new https.Agent(options) }
  if (!proxyConfigured(process.env)) return direct
  const { ProxyAgent } = await import('proxy-agent')
  const proxied = new ProxyAgent({ ...options, ...direct })
  return { httpAgent: proxied, httpsAgent: proxied }
}

/**
 * The request handler of the store's S3 client: keep-alive sockets for `sockets` requests, each
 * request bounded by `timeouts`, each answer's time told to `quickest`.
 */
export async function createRequestHandler(
  display: string,
  { connectTimeout, requestTimeout }: StoreTimeouts,
  sockets: number,
  quickest: QuickestAnswer,
): Promise<NodeHttpHandler> {
  return new DeadlineHttpHandler(display, requestTimeout, quickest, { connectionTimeout: connectTimeout, ...(await agents(sockets)) })
}
