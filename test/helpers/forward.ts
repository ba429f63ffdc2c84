import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { onTestFinished } from 'vitest'

/**
 * Sends `req` on to `target` and its answer back, for the test proxies in front of moto. `answered`
 * runs once the upstream answered and before the client sees it (a proxy may hold it there).
 */
export function forward(req: http.IncomingMessage, res: http.ServerResponse, target: URL, agent: http.Agent, answered?: () => Promise<void>): void {
  const forwarded = http.request(
    { hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent },
    async (answer) => {
      await answered?.()
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    },
  )
  forwarded.once('error', () => res.destroy())
  req.pipe(forwarded)
}

/** Listens on a free loopback port until the test ends (then `server` and `agent` are closed); resolves to its endpoint. */
export async function listenForTest(server: http.Server, agent: http.Agent): Promise<string> {
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready))
  onTestFinished(async () => {
    server.closeAllConnections()
    agent.destroy()
    await new Promise((closed) => server.close(closed))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}
