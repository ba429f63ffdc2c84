import http from 'node:http'

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
