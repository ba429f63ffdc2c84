import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { createAdaptiveLimit, forEachLimited, levelForRoundTrip } from '../../src/core/util/concurrency'

describe('forEachLimited', () => {
  it('never holds more than the budget, and runs a share larger than the budget alone', async () => {
    const sizes = [30, 30, 30, 100, 10, 10, 10, 10, 60, 5]
    let held = 0
    let most = 0
    const started: number[] = []
    await forEachLimited(
      sizes.map((size, index) => ({ size, index })),
      8,
      async ({ size, index }) => {
        started.push(index)
        held += Math.min(size, 64)
        most = Math.max(most, held)
        await sleep(5)
        held -= Math.min(size, 64)
      },
      { limit: 64, cost: ({ size }) => size },
    )
    expect(most).toBe(64)
    expect(started.sort((a, b) => a - b)).toEqual(sizes.map((_, index) => index))
  })
})

describe('createAdaptiveLimit', () => {
  /** Completes rounds on a simulated link whose throughput (work per ms) at `inFlight` is `rate(inFlight)`. */
  function drive(limit: ReturnType<typeof createAdaptiveLimit>, rate: (inFlight: number) => number, rounds: number, clock: { now: number }) {
    for (let round = 0; round < rounds; round++) {
      const inFlight = limit.current()
      for (let done = 0; done < inFlight; done++) {
        clock.now += 1 / rate(inFlight)
        limit.completed()
      }
    }
  }

  it('grows on a long link until the bandwidth-delay product is filled, then stays', () => {
    const clock = { now: 0 }
    const limit = createAdaptiveLimit({ initial: 32, max: 256, now: () => clock.now })
    // Latency-bound: every request takes 100 ms, so throughput rises with what is in flight, up to 128.
    drive(limit, (inFlight) => Math.min(inFlight, 128) / 100, 10, clock)
    // 256 gained nothing over 128: taken back.
    expect(limit.current()).toBe(128)
    const settled = limit.current()
    drive(limit, (inFlight) => Math.min(inFlight, 128) / 100, 5, clock)
    expect(limit.current()).toBe(settled)
  })

  it('keeps growing on a long link when the first round carried the largest files, and planning time counts in no round', () => {
    const clock = { now: 0 }
    const limit = createAdaptiveLimit({ initial: 32, max: 256, now: () => clock.now })
    clock.now += 5000 // the push plans before its first upload
    limit.current()
    // The largest files first: 32 of them take 2 s each, 32 at once.
    for (let done = 0; done < 32; done++) {
      clock.now += 2000 / 32
      limit.completed()
    }
    // A round to warm up: it sets no baseline.
    expect(limit.current()).toBe(32)
    // Then small files, latency-bound at 100 ms: more in flight is more done, up to 128.
    drive(limit, (inFlight) => Math.min(inFlight, 128) / 100, 10, clock)
    expect(limit.current()).toBe(128)
  })

  it('takes no baseline from the first round of the largest files: on a busy server it ends where it started', () => {
    const clock = { now: 0 }
    const limit = createAdaptiveLimit({ initial: 32, max: 256, now: () => clock.now })
    limit.current()
    // The 32 largest files, 4 s in all, then small ones on a server that takes 2 a millisecond at
    // any level; each round's files are smaller, so a round ends a tenth sooner than the one before.
    for (let done = 0; done < 32; done++) {
      clock.now += 4000 / 32
      limit.completed()
    }
    let speedup = 1
    for (let round = 0; round < 10; round++, speedup *= 1.1) {
      const inFlight = limit.current()
      for (let done = 0; done < inFlight; done++) {
        clock.now += 1 / (2 * speedup)
        limit.completed()
      }
    }
    expect(limit.current()).toBe(32)
  })

  it('stays near where it started when more in flight gains nothing (a busy server on a short link)', () => {
    const clock = { now: 0 }
    const limit = createAdaptiveLimit({ initial: 32, max: 256, now: () => clock.now })
    drive(limit, () => 2, 10, clock)
    expect(limit.current()).toBe(32)
  })

  it('halves on congestion and probes no more; never below its floor or above its ceiling', () => {
    const clock = { now: 0 }
    const limit = createAdaptiveLimit({ initial: 32, max: 256, min: 4, now: () => clock.now })
    limit.congested()
    expect(limit.current()).toBe(16)
    drive(limit, (inFlight) => inFlight, 5, clock)
    expect(limit.current()).toBe(16)
    for (let i = 0; i < 10; i++) limit.congested()
    expect(limit.current()).toBe(4)
    expect(createAdaptiveLimit({ initial: 512, max: 64 }).current()).toBe(64)
  })

  it('reads a starting level given as a function when the first task asks, not before', () => {
    let roundTripMs: number | undefined
    const limit = createAdaptiveLimit({ initial: () => levelForRoundTrip(32, 256, roundTripMs), max: 256 })
    roundTripMs = 100 // the store answered its first requests while the push planned
    expect(limit.current()).toBe(128)
    roundTripMs = 1
    expect(limit.current()).toBe(128)
  })
})

describe('levelForRoundTrip', () => {
  it("keeps the store's level on a short or unknown link", () => {
    expect(levelForRoundTrip(32, 256, undefined)).toBe(32)
    expect(levelForRoundTrip(32, 256, 0.4)).toBe(32)
    expect(levelForRoundTrip(32, 256, 20)).toBe(32)
  })

  it('widens it with the round trip on a long link, up to the maximum', () => {
    expect(levelForRoundTrip(32, 256, 50)).toBe(64)
    expect(levelForRoundTrip(32, 256, 100)).toBe(128)
    expect(levelForRoundTrip(64, 256, 100)).toBe(256)
    expect(levelForRoundTrip(32, 256, 2000)).toBe(256)
    expect(levelForRoundTrip(32, 16, undefined)).toBe(16)
  })
})

describe('forEachLimited with a limit that changes', () => {
  it('never runs more at once than the limit says when each task starts', async () => {
    let current = 2
    let active = 0
    let most = 0
    await forEachLimited(
      Array.from({ length: 40 }, (_, index) => index),
      { max: 8, current: () => current },
      async (index) => {
        active++
        most = Math.max(most, active)
        expect(active).toBeLessThanOrEqual(current)
        if (index === 10) current = 8
        if (index === 25) current = 3
        await sleep(2)
        active--
      },
    )
    expect(most).toBe(8)
  })
})

describe('forEachLimited under a limit far below its workers', () => {
  it('wakes only as many parked workers as there are free slots when a task ends', async () => {
    // 256 workers (an adaptive limit's ceiling) under a limit of 2: waking all of them at every end
    // made each of 200 tasks ask the limit about 250 times.
    let asked = 0
    const items = Array.from({ length: 200 }, (_, index) => index)
    await forEachLimited(
      items,
      {
        max: 256,
        current: () => {
          asked++
          return 2
        },
      },
      () => sleep(0),
    )
    expect(asked).toBeLessThan(items.length * 8)
  })
})

describe('forEachLimited with items that come later', () => {
  it('runs them after the first ones, within the limit, once they come, however soon the first ones ended', async () => {
    const ran: number[] = []
    let active = 0
    let most = 0
    const task = async (item: number) => {
      active++
      most = Math.max(most, active)
      await sleep(item < 3 ? 1 : 3)
      ran.push(item)
      active--
    }
    // The first items are done long before the others are known: the workers wait for them.
    await forEachLimited(
      [0, 1, 2],
      4,
      task,
      undefined,
      sleep(30).then(() => Array.from({ length: 20 }, (_, index) => index + 3)),
    )
    expect(ran.slice(0, 3).sort()).toEqual([0, 1, 2])
    expect(ran.sort((a, b) => a - b)).toEqual(Array.from({ length: 23 }, (_, index) => index))
    expect(most).toBe(4)
  })

  it('fails when they cannot be known, and stops waiting for them when a task fails', async () => {
    await expect(forEachLimited([1], 2, async () => {}, undefined, Promise.reject(new Error('no listing')))).rejects.toThrow('no listing')
    const started = Date.now()
    const never = new Promise<number[]>(() => {})
    await expect(
      forEachLimited(
        [1, 2],
        2,
        async (item) => {
          if (item === 2) throw new Error('task failed')
        },
        undefined,
        never,
      ),
    ).rejects.toThrow('task failed')
    expect(Date.now() - started).toBeLessThan(1000)
  })
})
