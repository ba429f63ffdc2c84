import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { planSync } from '../../src/core/model/sync-plan'
import { md5File } from '../../src/core/util/digest'

const md5 = (digit: string) => digit.repeat(32)
const names = (files: { relpath: string }[]) => files.map((file) => file.relpath)

describe('planSync', () => {
  it('skips only files held with the same bytes and headers, in the order wanted', () => {
    const wanted = [
      { relpath: 'js/app-AbC12345.js', size: 10, md5: md5('a'), cacheControl: 'immutable' },
      { relpath: 'index.html', size: 5, md5: md5('b'), cacheControl: 'short' },
      { relpath: 'new.js', size: 3, md5: md5('c') },
      { relpath: 'logo.svg', size: 7, md5: md5('d'), contentType: 'image/svg+xml' },
    ]
    const held = new Map([
      ['js/app-AbC12345.js', { size: 10, md5: md5('A'), cacheControl: 'immutable' }],
      ['index.html', { size: 5, md5: md5('e'), cacheControl: 'short' }],
      ['logo.svg', { size: 7, md5: md5('d'), contentType: 'text/plain' }],
    ])
    const plan = planSync(wanted, held)
    expect(names(plan.unchanged)).toEqual(['js/app-AbC12345.js'])
    expect(names(plan.added)).toEqual(['new.js'])
    expect(names(plan.changed)).toEqual(['index.html', 'logo.svg'])
  })

  it('treats anything unknown as changed: a missing hash on either side, or another size', () => {
    const wanted = [
      { relpath: 'a', size: 1, md5: md5('a') },
      { relpath: 'b', size: 1 },
      { relpath: 'c', size: 1, md5: md5('c') },
    ]
    const held = new Map([
      ['a', { size: 1 }],
      ['b', { size: 1, md5: md5('b') }],
      ['c', { size: 2, md5: md5('c') }],
    ])
    expect(names(planSync(wanted, held).changed)).toEqual(['a', 'b', 'c'])
  })

  it('ignores headers the wanted side does not name (a directory holds bytes only)', () => {
    const plan = planSync([{ relpath: 'a', md5: md5('a') }], new Map([['a', { md5: md5('a'), cacheControl: 'x' }]]))
    expect(names(plan.unchanged)).toEqual(['a'])
  })

  it('compares content alone with `headers: false` (a versioned store keeps headers in the manifest)', () => {
    const held = new Map([['a', { md5: md5('a'), cacheControl: 'old' }]])
    expect(names(planSync([{ relpath: 'a', md5: md5('a'), cacheControl: 'new' }], held, { headers: false }).unchanged)).toEqual(['a'])
    expect(names(planSync([{ relpath: 'a', md5: md5('a'), cacheControl: 'new' }], held).changed)).toEqual(['a'])
  })
})

describe('md5File', () => {
  it('hashes files of any size, a whole number of chunks too, and stops a large one nobody wants any more', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'push-cache-md5-'))
    for (const size of [0, 10, 1024 * 1024, 3 * 1024 * 1024 + 1]) {
      const bytes = Buffer.alloc(size, 'x')
      await writeFile(join(dir, 'file'), bytes)
      expect(await md5File(join(dir, 'file'))).toBe(createHash('md5').update(bytes).digest('hex'))
    }
    let chunks = 0
    expect(await md5File(join(dir, 'file'), () => ++chunks < 2)).toBeUndefined()
    expect(chunks).toBe(2)
    await rm(dir, { recursive: true })
  })
})
