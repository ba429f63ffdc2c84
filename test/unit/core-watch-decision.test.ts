import { describe, expect, it } from 'vitest'
import { decideCatchUp } from '../../src/core/serve/watch'

const files = (...relpaths: string[]) => relpaths.map((relpath) => ({ relpath, key: `data/shop/${relpath}` }))
const held = (timestamp: number | undefined, ...relpaths: string[]) => ({
  app: 'shop',
  store: 'file:/x',
  timestamp,
  poppedAt: '2026-12-06T00:00:00.000Z',
  files: Object.fromEntries(relpaths.map((relpath) => [relpath, { size: 1, md5: '0'.repeat(32) }])),
})

describe('what a watch does with what it read', () => {
  it('leaves dest alone while the store holds nothing', () => {
    expect(decideCatchUp('shop', { files: [] }, held(100, 'a.js'))).toBe('empty')
  })

  it('keeps a newer build than the store has (a restored snapshot)', () => {
    expect(decideCatchUp('shop', { files: files('a.js'), timestamp: 90 }, held(100, 'a.js'))).toBe('kept')
  })

  it('fetches nothing for the same build with the same names', () => {
    expect(decideCatchUp('shop', { files: files('a.js', 'b.js'), timestamp: 100 }, held(100, 'b.js', 'a.js'))).toBe('up-to-date')
  })

  it('applies a newer build, a changed set of names, another app or a first build', () => {
    expect(decideCatchUp('shop', { files: files('a.js'), timestamp: 110 }, held(100, 'a.js'))).toBe('apply')
    expect(decideCatchUp('shop', { files: files('a.js', 'c.js'), timestamp: 100 }, held(100, 'a.js'))).toBe('apply')
    expect(decideCatchUp('shop', { files: files('a.js'), timestamp: 90 }, { ...held(100, 'a.js'), app: 'other' })).toBe('apply')
    expect(decideCatchUp('shop', { files: files('a.js'), timestamp: 90 }, undefined)).toBe('apply')
  })
})
