import { describe, expect, it } from 'vitest'
import { createBackoff } from '../../src/core/util/backoff'

describe('createBackoff', () => {
  it('doubles the ceiling with every failure, up to the upper bound, and starts over on reset', () => {
    const backoff = createBackoff({ minMs: 100, maxMs: 500 }, { random: () => 1 })
    expect([backoff.next(), backoff.next(), backoff.next(), backoff.next()]).toEqual([100, 200, 400, 500])
    backoff.reset()
    expect(backoff.next()).toBe(100)
  })

  it('waits at least the lower bound for a reconnect, and from zero for a request retry', () => {
    expect(createBackoff({ minMs: 100, maxMs: 500 }, { random: () => 0 }).next()).toBe(100)
    const retry = createBackoff({ minMs: 200, maxMs: Number.POSITIVE_INFINITY }, { floorMs: 0, random: () => 0.5 })
    expect([retry.next(), retry.next(), retry.next()]).toEqual([100, 200, 400])
  })
})
