import { spawn } from 'node:child_process'
import { connect, createServer, type Socket } from 'node:net'
import { afterAll, onTestFinished } from 'vitest'

const LOOPBACK = '127.0.0.1'

/**
 * What the proxy does to a connection:
 * - `stall`: nothing gets through either way any more (held until `heal`): a server that accepts and never answers;
 * - `reset`: the connection is reset as soon as it opens;
 * - `trickle`: answers reach the client at `bytesPerSecond`;
 * - `drop`: the connection is closed once the client sent `afterBytes` on it (mid-upload).
 */
export type Fault = { kind: 'stall' } | { kind: 'reset' } | { kind: 'trickle'; bytesPerSecond: number } | { kind: 'drop'; afterBytes: number }

export interface FaultProxy {
  port: number
  /** Connections accepted so far. */
  readonly accepted: number
  /** Connections a fault acted on so far. */
  readonly met: number
  /**
   * From now on, `fault` acts on every connection, open ones included (as soon as the fault
   * applies: a drop once enough bytes went through), or only on the first `times` it acts on.
   */
  fault(fault: Fault, times?: number): void
  /** Ends every fault: stalled bytes flow again, new connections pass. */
  heal(): void
}

interface Link {
  client: Socket
  upstream: Socket
  /** The fault that acted on this connection: it stays until `heal` (a trickle, for good). */
  fault?: Fault
  /** Bytes held by a stall or a trickle, per direction. */
  up: Buffer[]
  down: Buffer[]
  sent: number
  /** The server closed its side: the client's side ends once what is held for it was delivered. */
  upstreamClosed: boolean
}

/** A TCP proxy on loopback in front of `target`, that faults connections on demand. Closed after the test file. */
export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const links = new Set<Link>()
  let active: { fault: Fault; left?: number } | undefined
  let accepted = 0
  let met = 0

  /** The fault that acts on `link` now, if any of `kind`: its own, or the active one (which then sticks to it). */
  const faultOf = <K extends Fault['kind']>(link: Link, kind: K, applies = true): Extract<Fault, { kind: K }> | undefined => {
    if (link.fault) return link.fault.kind === kind ? (link.fault as Extract<Fault, { kind: K }>) : undefined
    if (active?.fault.kind !== kind || !applies) return undefined
    link.fault = active.fault
    met++
    if (active.left !== undefined && --active.left === 0) active = undefined
    return link.fault as Extract<Fault, { kind: K }>
  }

  const toUpstream = (link: Link, chunk: Buffer) => {
    if (faultOf(link, 'stall')) return void link.up.push(chunk)
    link.sent += chunk.length
    const pending = active?.fault.kind === 'drop' ? active.fault : undefined
    if (faultOf(link, 'drop', pending !== undefined && link.sent > pending.afterBytes)) {
      link.client.destroy()
      link.upstream.destroy()
      return
    }
    link.upstream.write(chunk)
  }
  const toClient = (link: Link, chunk: Buffer) => {
    if (faultOf(link, 'stall')) return void link.down.push(chunk)
    const trickle = faultOf(link, 'trickle')
    if (!trickle) return void link.client.write(chunk)
    link.down.push(chunk)
    if (link.down.length === 1) startTrickle(link, trickle.bytesPerSecond)
  }
  /** Sends a tenth of the rate every 100 ms until nothing is left. */
  const startTrickle = (link: Link, bytesPerSecond: number) => {
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
  const resetIfFaulted = (link: Link) => {
    if (!faultOf(link, 'reset')) return
    link.client.resetAndDestroy()
    link.upstream.destroy()
  }

  const server = createServer((client) => {
    accepted++
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
    resetIfFaulted(link)
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
    get met() {
      return met
    },
    fault(fault, times) {
      active = { fault, left: times }
      for (const link of links) resetIfFaulted(link)
    },
    heal() {
      active = undefined
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
 * For one test (call it inside the test): a loopback port whose listener never accepts and whose backlog is full, so a connection attempt
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
  // Inside a test, only onTestFinished runs: an afterAll registered there is dropped, and the child outlived the run.
  onTestFinished(() => void child.kill())
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (line: Buffer) => resolve(Number(String(line).trim()))))
  const fillers = [0, 1].map(() => connect(port, LOOPBACK))
  await Promise.all(fillers.map((socket) => new Promise((connected) => socket.once('connect', connected))))
  onTestFinished(() => {
    for (const socket of fillers) socket.destroy()
  })
  return port
}
