import { spawn } from 'node:child_process'
import { connect, createServer, type Socket } from 'node:net'
import { afterAll } from 'vitest'

const LOOPBACK = '127.0.0.1'

/**
 * What the proxy does to a connection:
 * - `stall`: accepts and reads, but nothing gets through either way (held until `heal`);
 * - `reset`: resets the connection as soon as it is accepted (or at once, if it is open);
 * - `trickle`: answers reach the client at `bytesPerSecond`;
 * - `drop`: closes the connection once the client sent `afterBytes` (mid-upload).
 */
export type Fault = { kind: 'stall' } | { kind: 'reset' } | { kind: 'trickle'; bytesPerSecond: number } | { kind: 'drop'; afterBytes: number }

export interface FaultProxy {
  port: number
  /** Connections accepted so far. */
  readonly accepted: number
  /**
   * `fault` for the next `connections` connections, or from now on for every connection (open
   * ones included) when `connections` is unset.
   */
  fault(fault: Fault, connections?: number): void
  /** Ends every fault: stalled bytes flow again, new connections pass. */
  heal(): void
}

interface Link {
  client: Socket
  upstream: Socket
  fault?: Fault
  /** Bytes held by a stall, per direction. */
  up: Buffer[]
  down: Buffer[]
  sent: number
  /** The server closed its side: the client's side ends once what is held for it was delivered. */
  upstreamClosed: boolean
}

/** A TCP proxy on loopback in front of `target`, that faults connections on demand. Closed after the test file. */
export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const links = new Set<Link>()
  let lasting: Fault | undefined
  let next: { fault: Fault; left: number } | undefined
  let accepted = 0

  const toUpstream = (link: Link, chunk: Buffer) => {
    const { fault } = link
    if (fault?.kind === 'stall') return void link.up.push(chunk)
    link.sent += chunk.length
    if (fault?.kind === 'drop' && link.sent > fault.afterBytes) {
      link.upstream.write(chunk.subarray(0, chunk.length - (link.sent - fault.afterBytes)))
      link.client.destroy()
      link.upstream.destroy()
      return
    }
    link.upstream.write(chunk)
  }
  const toClient = (link: Link, chunk: Buffer) => {
    const { fault } = link
    if (fault?.kind === 'stall') return void link.down.push(chunk)
    if (fault?.kind !== 'trickle') return void link.client.write(chunk)
    link.down.push(chunk)
    trickle(link, fault.bytesPerSecond)
  }
  /** Sends a tenth of the rate every 100 ms until nothing is left. */
  const trickle = (link: Link, bytesPerSecond: number) => {
    if (link.down.length !== 1) return // already trickling
    const timer = setInterval(() => {
      const pending = Buffer.concat(link.down)
      const slice = pending.subarray(0, Math.max(1, Math.floor(bytesPerSecond / 10)))
      link.down = pending.length > slice.length ? [pending.subarray(slice.length)] : []
      if (!link.client.destroyed) link.client.write(slice)
      if (link.down.length > 0 && !link.client.destroyed) return
      clearInterval(timer)
      endIfDelivered(link)
    }, 100)
  }
  const endIfDelivered = (link: Link) => {
    if (link.upstreamClosed && link.down.length === 0 && link.fault?.kind !== 'stall') link.client.end()
  }
  const apply = (link: Link, fault: Fault | undefined) => {
    link.fault = fault
    if (fault?.kind === 'reset') {
      link.client.resetAndDestroy()
      link.upstream.destroy()
    }
  }

  const server = createServer((client) => {
    accepted++
    const fault = next ? next.fault : lasting
    if (next && --next.left === 0) next = undefined
    const upstream = connect(target.port, target.host)
    const link: Link = { client, upstream, up: [], down: [], sent: 0, upstreamClosed: false }
    links.add(link)
    client.on('data', (chunk) => toUpstream(link, chunk))
    upstream.on('data', (chunk) => toClient(link, chunk))
    const close = () => {
      links.delete(link)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', close).on('error', close)
    // A server that answered and closed (HTTP/1.0 style): a stalled or trickling answer still
    // holds the client's side open.
    const upstreamClosed = () => {
      link.upstreamClosed = true
      endIfDelivered(link)
    }
    upstream.on('close', upstreamClosed).on('error', upstreamClosed)
    apply(link, fault)
  })
  await new Promise<void>((ready) => server.listen(0, LOOPBACK, ready))
  afterAll(async () => {
    for (const link of links) link.client.destroy()
    await new Promise((closed) => server.close(closed))
  })

  return {
    port: (server.address() as { port: number }).port,
    get accepted() {
      return accepted
    },
    fault(fault, connections) {
      if (connections !== undefined) {
        next = { fault, left: connections }
        return
      }
      lasting = fault
      for (const link of links) apply(link, fault)
    },
    heal() {
      lasting = undefined
      next = undefined
      for (const link of links) {
        if (link.fault?.kind !== 'stall') continue
        link.fault = undefined
        for (const chunk of link.up.splice(0)) toUpstream(link, chunk)
        for (const chunk of link.down.splice(0)) toClient(link, chunk)
        endIfDelivered(link)
      }
    },
  }
}

/**
 * A loopback port whose listener never accepts and whose backlog is full, so a connection attempt
 * waits for an answer to its SYN that never comes: what a firewalled or dead host looks like.
 */
export async function unansweredPort(): Promise<number> {
  // A child process blocks its event loop right after listen(backlog 1): the kernel completes two
  // handshakes into the backlog, then drops every further SYN.
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('net').createServer(); s.listen({ port: 0, host: '${LOOPBACK}', backlog: 1 }, () => { require('fs').writeSync(1, s.address().port + '\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0) })`,
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  )
  afterAll(() => void child.kill())
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (line: Buffer) => resolve(Number(String(line).trim()))))
  const fillers = [0, 1].map(() => connect(port, LOOPBACK))
  await Promise.all(fillers.map((socket) => new Promise((connected) => socket.once('connect', connected))))
  afterAll(() => {
    for (const socket of fillers) socket.destroy()
  })
  return port
}
