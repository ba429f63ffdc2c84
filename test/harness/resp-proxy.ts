import type { AddressInfo } from 'node:net'
import { createConnection, createServer, type Socket } from 'node:net'
import { createGate, type Gate, keyKind, type Operation, type RequestType } from './holds'

/** A Valkey endpoint in front of a real one whose commands pass one gate: the `hold-proxy.ts` of a CLI actor on Valkey. */
export interface RespHoldProxy {
  /** `valkey://127.0.0.1:<port>`: what the CLI is given as `--store`. */
  url: string
  gate: Gate
  app: string
  close(): Promise<void>
}

/**
 * The end of the RESP2 value that starts at `at` (a command is an array of bulk strings; a reply is
 * any type), or -1 when `buffer` does not hold all of it yet.
 */
function endOfValue(buffer: Buffer, at: number): number {
  const lineEnd = buffer.indexOf('\r\n', at)
  if (lineEnd < 0) return -1
  const type = String.fromCharCode(buffer[at]!)
  const count = Number(buffer.toString('latin1', at + 1, lineEnd))
  if (type === '$') return count < 0 ? lineEnd + 2 : lineEnd + 2 + count + 2 <= buffer.length ? lineEnd + 2 + count + 2 : -1
  if (type !== '*') return lineEnd + 2 // + - : one line
  let next = lineEnd + 2
  for (let i = 0; i < count && next >= 0; i++) next = next < buffer.length ? endOfValue(buffer, next) : -1
  return next
}

/** The bulk strings of a command array: its name and arguments. */
function commandArgs(raw: Buffer): string[] {
  const args: string[] = []
  let at = raw.indexOf('\r\n') + 2
  while (at < raw.length) {
    const lineEnd = raw.indexOf('\r\n', at)
    const length = Number(raw.toString('latin1', at + 1, lineEnd))
    args.push(raw.toString('latin1', lineEnd + 2, lineEnd + 2 + length))
    at = lineEnd + 2 + length + 2
  }
  return args
}

/** What a command of the store does, on which key (`SCAN`'s pattern without its `*`); undefined for the connection's own commands. */
function classify([name = '', ...args]: string[]): { operation: Operation; key: string } | undefined {
  const command = name.toUpperCase()
  const simple: Record<string, Operation> = {
    SET: 'put',
    GET: 'read',
    UNLINK: 'delete',
    DEL: 'delete',
    EXISTS: 'exists',
    PERSIST: 'persist',
    PUBLISH: 'publish',
  }
  if (simple[command]) return { operation: simple[command], key: args[0] ?? '' }
  // The compare-and-swap scripts of valkey-keys.ts: one replaces, one deletes.
  if (command === 'EVAL') return { operation: args[0]?.includes("'UNLINK'") ? 'delete' : 'put', key: args[2] ?? '' }
  if (command === 'SCAN') return { operation: 'list', key: (args[args.indexOf('MATCH') + 1] ?? '').replace(/\*$/, '').replace(/\\(.)/g, '$1') }
  return undefined
}

/** Splits off every whole value at the head of `buffer`. */
function takeValues(buffer: Buffer): { values: Buffer[]; rest: Buffer } {
  const values: Buffer[] = []
  let at = 0
  for (let end = endOfValue(buffer, at); at < buffer.length && end > 0; end = at < buffer.length ? endOfValue(buffer, at) : -1) {
    values.push(buffer.subarray(at, end))
    at = end
  }
  return { values, rest: buffer.subarray(at) }
}

/**
 * One client connection: its commands pass the gate in order before they are forwarded, and each
 * reply (in the same order: RESP2 answers in order) passes it again before it is sent back.
 * Pub/sub connections are not for it: their messages are no replies.
 */
function relay(client: Socket, proxy: RespHoldProxy, upstream: { host: string; port: number }) {
  const server = createConnection(upstream)
  const sent: (RequestType | undefined)[] = []
  let fromClient: Buffer = Buffer.alloc(0)
  let fromServer: Buffer = Buffer.alloc(0)
  let toServer = Promise.resolve()
  let toClient = Promise.resolve()
  const typeOf = (raw: Buffer) => {
    const request = classify(commandArgs(raw))
    return request && (`${request.operation}:${keyKind(request.key, proxy.app, 'versioned')}` as const)
  }
  client.on('data', (chunk: Buffer) => {
    const { values, rest } = takeValues(Buffer.concat([fromClient, chunk]))
    fromClient = rest
    for (const raw of values)
      toServer = toServer.then(async () => {
        const type = typeOf(raw)
        if (type) await proxy.gate.pass(type, 'before')
        sent.push(type)
        server.write(raw)
      })
    toServer = toServer.catch(() => void client.destroy())
  })
  server.on('data', (chunk: Buffer) => {
    const { values, rest } = takeValues(Buffer.concat([fromServer, chunk]))
    fromServer = rest
    for (const raw of values)
      toClient = toClient.then(async () => {
        const type = sent.shift()
        if (type) await proxy.gate.pass(type, 'after')
        client.write(raw)
      })
  })
  const end = () => {
    client.destroy()
    server.destroy()
  }
  client.on('close', end).on('error', end)
  server.on('close', end).on('error', end)
  return end
}

/** Starts a RESP proxy to the Valkey server at `upstream`, for one actor of `app`. */
export async function startRespProxy(upstream: { host: string; port: number }, app: string): Promise<RespHoldProxy> {
  const connections = new Set<() => void>()
  const server = createServer((client) => {
    const end = relay(client, proxy, upstream)
    connections.add(end)
    client.once('close', () => connections.delete(end))
  })
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready))
  const proxy: RespHoldProxy = {
    url: `valkey://127.0.0.1:${(server.address() as AddressInfo).port}`,
    gate: createGate(),
    app,
    async close() {
      proxy.gate.releaseAll()
      for (const end of connections) end()
      await new Promise((closed) => server.close(closed))
    },
  }
  return proxy
}
