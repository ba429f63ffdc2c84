import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { forEachLimited } from '../../src/core/util/concurrency'

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
