import { describe, expect, it } from 'vitest'
import { planVersionedPrune } from '../../src/core/prune/rules'

const DAY = 86400
const now = 100 * DAY
const build = (daysAgo: number, files: string[], extra: { versions?: Record<string, number>; scanned?: boolean } = {}) => ({
  timestamp: now - daysAgo * DAY,
  files,
  ...extra,
})
const rule = { now, olderThanSeconds: 2 * DAY, keep: 1, protect: [] }
const ts = (builds: readonly { timestamp: number }[]) => builds.map((b) => b.timestamp)

describe('versioned prune plan', () => {
  it('deletes every key of a dying build that no surviving build names, files no later build has included', () => {
    const latest = build(1, ['fed-mods.json', 'main.c.js'])
    const old = build(10, ['fed-mods.json', 'legacy.css', 'main.a.js'])
    const plan = planVersionedPrune([latest, old], rule)
    expect(plan.deleteVersions).toEqual([
      { timestamp: old.timestamp, relpath: 'fed-mods.json' },
      { timestamp: old.timestamp, relpath: 'legacy.css' },
      { timestamp: old.timestamp, relpath: 'main.a.js' },
    ])
    expect(ts(plan.dying)).toEqual([old.timestamp])
  })

  it('keeps the key of a file a surviving build found unchanged in the dying one', () => {
    const old = build(10, ['fed-mods.json', 'vendor.js'])
    const latest = build(1, ['fed-mods.json', 'vendor.js'], { versions: { 'vendor.js': old.timestamp } })
    const plan = planVersionedPrune([latest, old], rule)
    expect(plan.deleteVersions).toEqual([{ timestamp: old.timestamp, relpath: 'fed-mods.json' }])
    expect(ts(plan.dying)).toEqual([old.timestamp])
  })

  it('deletes a reused key once the last build naming it dies', () => {
    const first = build(20, ['vendor.js'])
    const second = build(10, ['vendor.js'], { versions: { 'vendor.js': first.timestamp } })
    const latest = build(1, ['vendor.js'])
    expect(planVersionedPrune([latest, second, first], rule).deleteVersions).toEqual([{ timestamp: first.timestamp, relpath: 'vendor.js' }])
  })

  it('keeps the newest version of each relpath of builds valpop wrote without a manifest', () => {
    const builds = [
      build(1, ['a.js'], { scanned: true }),
      build(10, ['b.js', 'c.js'], { scanned: true }),
      build(20, ['b.js', 'c.js', 'd.js'], { scanned: true }),
    ]
    const plan = planVersionedPrune(builds, rule)
    expect(plan.deleteVersions).toEqual([
      { timestamp: now - 20 * DAY, relpath: 'b.js' },
      { timestamp: now - 20 * DAY, relpath: 'c.js' },
    ])
  })

  it('touches nothing among the newest `keep` builds or builds younger than the threshold', () => {
    const builds = [build(0, ['a.js']), build(1, ['a.js']), build(5, ['a.js'])]
    expect(planVersionedPrune(builds, { ...rule, keep: 3 }).deleteVersions).toEqual([])
    expect(planVersionedPrune(builds, { ...rule, olderThanSeconds: 10 * DAY }).deleteVersions).toEqual([])
  })
})
