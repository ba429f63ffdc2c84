import { describe, expect, it } from 'vitest'
import { partitionBuilds, planFlatPrune } from '../../src/core/prune/rules'
import { planVersionedPop } from '../../src/core/serve/pop'

const DAY = 86400
const now = 100 * DAY
const build = (daysAgo: number, files: string[]) => ({ timestamp: now - daysAgo * DAY, files })
const rule = { now, olderThanSeconds: 2 * DAY, keep: 3, protect: ['fed-mods.json'] }

describe('which builds die', () => {
  it('kills a build only when it is old AND not among the newest `keep`', () => {
    const builds = [build(10, []), build(9, []), build(8, []), build(7, []), build(1, [])]
    const { dying, surviving } = partitionBuilds(builds, rule)
    expect(surviving.map((b) => b.timestamp)).toEqual([now - DAY, now - 7 * DAY, now - 8 * DAY])
    expect(dying.map((b) => b.timestamp)).toEqual([now - 9 * DAY, now - 10 * DAY])
  })

  it('keeps young builds however many there are', () => {
    const builds = Array.from({ length: 10 }, (_, i) => ({ timestamp: now - i * 60, files: [] }))
    expect(partitionBuilds(builds, rule).dying).toEqual([])
  })

  it('never kills the latest build, even with keep 0', () => {
    const { surviving } = partitionBuilds([build(30, []), build(20, [])], { ...rule, keep: 0 })
    expect(surviving.map((b) => b.timestamp)).toEqual([now - 20 * DAY])
  })
})

describe('flat prune plan', () => {
  it('deletes the files only dying builds name, never a file a survivor names, never the entrypoint', () => {
    const builds = [
      build(1, ['fed-mods.json', 'main.c.js', 'shared.js']),
      build(3, ['fed-mods.json', 'main.b.js', 'shared.js']),
      build(4, ['fed-mods.json', 'main.b2.js']),
      build(10, ['fed-mods.json', 'main.a.js', 'shared.js', 'main.b.js', 'old.css']),
    ]
    const plan = planFlatPrune(builds, rule)
    expect(plan.dying.map((b) => b.timestamp)).toEqual([now - 10 * DAY])
    expect(plan.deleteFiles).toEqual(['main.a.js', 'old.css'])
  })

  it('deletes nothing when nothing is old enough', () => {
    expect(planFlatPrune([build(0, ['a']), build(1, ['b'])], { ...rule, keep: 1 }).deleteFiles).toEqual([])
  })
})

describe('versioned pop plan', () => {
  it('takes each file from the newest complete build that has it', () => {
    const files = planVersionedPop('app', [
      { timestamp: 300, files: ['fed-mods.json', 'new.js'], complete: false },
      { timestamp: 200, files: ['fed-mods.json', 'a:b.js'], complete: true },
      { timestamp: 100, files: ['fed-mods.json', 'old.js', 'a:b.js'], complete: true },
    ])
    expect(files.sort((a, b) => a.key.localeCompare(b.key))).toEqual([
      { relpath: 'old.js', key: 'data:app:100:old.js' },
      { relpath: 'a:b.js', key: 'data:app:200:a:b.js' },
      { relpath: 'fed-mods.json', key: 'data:app:200:fed-mods.json' },
    ])
  })

  it('refuses a build that names a path outside the destination', () => {
    expect(() => planVersionedPop('app', [{ timestamp: 1, files: ['../evil.sh'], complete: true }])).toThrow(/data:app:1:\.\.\/evil\.sh/)
  })
})
