import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { vwatchPoll } from '../../src/core/announce/vwatch'
import { putVersion, uniqueName, vwatchEnv, vwatchStats, waitForStats } from '../helpers/vwatch'

const FAST = { minMs: 200, maxMs: 1_000 }
const stops: AbortController[] = []
afterEach(() => {
  for (const stop of stops.splice(0)) stop.abort()
})

/** `count` watchers of `name` holding `held`, as `count` servers running `push-cache watch --vwatch` would. */
function watchers(name: string, count: number, held: string | undefined, timeoutSeconds?: number) {
  const stop = new AbortController()
  stops.push(stop)
  const hints = Array.from({ length: count }, () => [] as number[])
  const done = hints.map((hinted) =>
    vwatchPoll({ url: vwatchEnv().read, name, backoff: FAST, timeoutSeconds }).listen(
      { hint: () => hinted.push(Date.now()), status() {}, heldVersion: () => held },
      stop.signal,
    ),
  )
  return {
    hints,
    stop() {
      stop.abort()
      return Promise.all(done)
    },
  }
}

const announce = (name: string, timestamp: number) => putVersion(name, { etag: `"${timestamp}"`, lastModified: new Date(timestamp * 1000).toUTCString() })

describe('the vwatch long-poll', () => {
  it('wakes 100 watchers of one name with one announce, each once', async () => {
    const name = uniqueName()
    expect((await announce(name, 100)).status).toBe(204)
    const herd = watchers(name, 100, '100')
    await waitForStats(name, (stats) => stats.waiting === 100)

    const announced = Date.now()
    expect((await announce(name, 200)).status).toBe(204)
    const deadline = Date.now() + 5_000
    while (herd.hints.some((hinted) => hinted.length === 0) && Date.now() < deadline) await sleep(10)
    const slowest = Math.max(...herd.hints.map((hinted) => hinted[0] ?? Number.POSITIVE_INFINITY)) - announced
    // All in one test process on a shared machine: the bound says "woken by the announce", not a latency target.
    expect(slowest).toBeLessThan(5_000)
    // Each re-polls at once with the new version, and holds again: nobody is woken twice.
    await waitForStats(name, (stats) => stats.waiting === 100)
    expect(herd.hints.map((hinted) => hinted.length)).toEqual(Array(100).fill(1))
    await herd.stop()
    console.info(`100 watchers woken within ${slowest} ms of one announce`)
  })

  it('never polls again at once after an answer without a change, and backs off on a name nobody announced', async () => {
    const quiet = uniqueName()
    expect((await announce(quiet, 100)).status).toBe(204)
    const unknown = uniqueName()
    // A zero timeout: every poll comes back at once with the same version, as after a long hold.
    const held = watchers(quiet, 10, '100', 0)
    const lost = watchers(unknown, 1, undefined)
    await sleep(3_000)
    await Promise.all([held.stop(), lost.stop()])
    // Each next poll waits a random part of a second: about 6 each in 3 s, where polling at once would make thousands.
    const { gets } = await vwatchStats(quiet)
    expect(gets).toBeGreaterThanOrEqual(10)
    expect(gets).toBeLessThanOrEqual(10 * 12)
    expect(held.hints.flat()).toEqual([])
    // 404s back off 200 ms, then up to 400 ms, 800 ms, 1 s... (about 7 polls in 3 s on average),
    // and never less than 200 ms: at most 3000 / 200 + 1 however the jitter falls, not a spin.
    expect((await vwatchStats(unknown)).gets).toBeLessThanOrEqual(16)
    expect((await vwatchStats(unknown)).gets).toBeGreaterThanOrEqual(2)
  })
})
