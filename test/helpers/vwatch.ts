import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { inject } from 'vitest'
import type { VwatchEnv, VwatchStats } from '../setup/vwatch-server'

/** The vwatch-protocol server test/setup/vwatch-server.ts started. */
export const vwatchEnv = (): VwatchEnv => inject('vwatch')

/** A name no other test uses, with a `/` in it as push-cache's default names have. */
export const uniqueName = (): string => `test/${randomBytes(4).toString('hex')}`

/** Every request below has a deadline, so a broken server fails a test instead of hanging it. */
const DEADLINE_MS = 40_000

/** What the server saw for `name`. */
export async function vwatchStats(name: string): Promise<VwatchStats> {
  const response = await fetch(`${vwatchEnv().write}/debug/stats?name=${encodeURIComponent(name)}`, { signal: AbortSignal.timeout(DEADLINE_MS) })
  return (await response.json()) as VwatchStats
}

/** Polls the stats until `ready` holds (at most `timeoutMs`). */
export async function waitForStats(name: string, ready: (stats: VwatchStats) => boolean, timeoutMs = 10_000): Promise<VwatchStats> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const stats = await vwatchStats(name)
    if (ready(stats)) return stats
    if (Date.now() > deadline) throw new Error(`vwatch stats of ${name} never matched: ${JSON.stringify(stats)}`)
    await sleep(20)
  }
}

const path = (name: string) => `/v1/versions/${name.split('/').map(encodeURIComponent).join('/')}`

/** `PUT /v1/versions/{name}` on the write port, as any vwatch writer sends it. */
export function putVersion(name: string, init: { etag?: string; lastModified?: string; query?: string; body?: string | Buffer } = {}): Promise<Response> {
  const headers: Record<string, string> = {}
  if (init.etag !== undefined) headers.ETag = init.etag
  if (init.lastModified !== undefined) headers['Last-Modified'] = init.lastModified
  return fetch(`${vwatchEnv().write}${path(name)}${init.query ?? ''}`, {
    method: 'PUT',
    headers,
    body: init.body ?? '',
    signal: AbortSignal.timeout(DEADLINE_MS),
  })
}

/** `GET /v1/versions/{name}?version=&timeout=` on the read port: blocks while `version` is the stored one. */
export function getVersion(name: string, { version, timeout }: { version?: string; timeout?: string } = {}): Promise<Response> {
  const query = new URLSearchParams({ ...(version === undefined ? {} : { version }), ...(timeout === undefined ? {} : { timeout }) })
  return fetch(`${vwatchEnv().read}${path(name)}?${query}`, { signal: AbortSignal.timeout(DEADLINE_MS) })
}

/** The version an answer carries: its `ETag` without the quotes. */
export const versionOf = (response: Response): string => (response.headers.get('etag') ?? '').replace(/^"|"$/g, '')
