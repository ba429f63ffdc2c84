import { describe, expect, it } from 'vitest'
import { planVersionedPrune } from '../src/core/prune'

const DAY = 86400
const now = 100 * DAY
const build = (daysAgo: number, files: string[]) => ({ timestamp: now - daysAgo * DAY, files })
const rule = { now, olderThanSeconds: 2 * DAY, keep: 1 }
const ts = (builds: readonly { timestamp: number }[]) => builds.map((b) => b.timestamp)

describe('versioned prune plan', () => {
  it('deletes the versions a newer build replaced, and the build once it holds nothing else', () => {
    const latest = build(1, ['fed-mods.json', 'main.js'])
    const old = build(10, ['fed-mods.json', 'main.js'])
    const plan = planVersionedPrune([latest, old], rule)
    expect(plan.deleteVersions).toEqual([
      { timestamp: old.timestamp, relpath: 'fed-mods.json' },
      { timestamp: old.timestamp, relpath: 'main.js' },
    ])
    expect(ts(plan.dying)).toEqual([old.timestamp])
    expect(plan.shrinking).toEqual([])
  })

  it('keeps the newest version of every relpath, and shrinks its dying build to the files it still holds', () => {
    const latest = build(1, ['fed-mods.json', 'main.c.js'])
    const old = build(10, ['fed-mods.json', 'legacy.css', 'main.a.js'])
    const plan = planVersionedPrune([latest, old], rule)
    expect(plan.deleteVersions).toEqual([{ timestamp: old.timestamp, relpath: 'fed-mods.json' }])
    expect(plan.dying).toEqual([])
    expect(plan.shrinking).toEqual([{ build: old, files: ['legacy.css', 'main.a.js'] }])
  })

  it('leaves whole a dying build whose every version is still the newest', () => {
    const latest = build(1, ['fed-mods.json'])
    const old = build(10, ['only-here.js'])
    const plan = planVersionedPrune([latest, old], rule)
    expect(plan).toMatchObject({ dying: [], shrinking: [], deleteVersions: [] })
    expect(ts(plan.surviving)).toEqual([latest.timestamp, old.timestamp])
  })

  it('judges the newest version over every build, so a file two dying builds share stays in the newer one', () => {
    const builds = [build(1, ['a.js']), build(10, ['b.js', 'c.js']), build(20, ['b.js', 'c.js', 'd.js'])]
    const plan = planVersionedPrune(builds, rule)
    expect(plan.deleteVersions).toEqual([
      { timestamp: now - 20 * DAY, relpath: 'b.js' },
      { timestamp: now - 20 * DAY, relpath: 'c.js' },
    ])
    expect(plan.shrinking).toEqual([{ build: builds[2], files: ['d.js'] }])
    expect(ts(plan.surviving)).toEqual([now - DAY, now - 10 * DAY])
  })

  it('touches nothing among the newest `keep` builds or builds younger than the threshold', () => {
    const builds = [build(0, ['a.js']), build(1, ['a.js']), build(5, ['a.js'])]
    expect(planVersionedPrune(builds, { ...rule, keep: 3 }).deleteVersions).toEqual([])
    expect(planVersionedPrune(builds, { ...rule, olderThanSeconds: 10 * DAY }).deleteVersions).toEqual([])
  })
})
