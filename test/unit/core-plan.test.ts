import { describe, expect, it } from 'vitest'
import { entrypointWarnings, warnOfEntrypoints } from '../../src/core/push/entrypoints'
import { cacheControlOf, contentTypeOf, hasContentHash, planUpload } from '../../src/core/push/plan'
import { flatLayout, versionedLayout } from '../../src/core/store/layout'
import { silentLogger } from '../../src/core/util/logger'
import { resolveOptions } from '../../src/options'
import { HASHED_NAMES, UNHASHED_NAMES } from '../helpers/hashed-names'

const options = (extra = {}) => resolveOptions({ app: 'inventory', timestamp: 1700000000, ...extra }, {})
const file = (relpath: string, size = 10) => ({ relpath, path: `/out/${relpath}`, size })

describe('content types', () => {
  it.each([
    ['main.js', 'text/javascript; charset=utf-8'],
    ['style.css', 'text/css; charset=utf-8'],
    ['index.html', 'text/html; charset=utf-8'],
    ['fed-mods.json', 'application/json; charset=utf-8'],
    ['main.js.map', 'application/json; charset=utf-8'],
    ['fonts/a.woff2', 'font/woff2'],
    ['img/logo café.svg', 'image/svg+xml'],
    ['mod.wasm', 'application/wasm'],
    ['LICENSE', 'application/octet-stream'],
  ])('%s is served as %s', (relpath, type) => expect(contentTypeOf(relpath)).toBe(type))
})

describe('cache control', () => {
  const cc = options().cacheControl
  it.each([
    ['fed-mods.json', cc.short],
    ['index.html', cc.short],
    ['nested/index.html', cc.short],
    ['app-info.json', cc.short],
    ['app-info.deps.json', cc.short],
  ])('%s gets %s, whatever the bundler says', (relpath, value) => {
    expect(cacheControlOf(relpath, cc, ['fed-mods.json'], true)).toBe(value)
    expect(cacheControlOf(relpath, cc, ['fed-mods.json'])).toBe(value)
  })

  it('takes a hash from the bundler or the name, so the plugin and the CLI agree on every name that shows one', () => {
    // fec writes fonts as `fonts/[name][ext]`: no hash, whatever the name looks like.
    expect(cacheControlOf('fonts/OpenSans-SemiBold.woff2', cc, [], false)).toBe(cc.default)
    // A hash the name alone would not give away (Vite's `[name]-[hash]` can be all letters).
    expect(cacheControlOf('assets/lazy-Bsle-cxw.js', cc, [], true)).toBe(cc.immutable)
  })

  it("gives webpack's license file of a hashed chunk the same header from the plugin and the CLI", () => {
    // webpack does not mark `[file].LICENSE.txt` immutable; the CLI reads the hash in its name.
    const relpath = 'js/main.3f2a1b9c0d.js.LICENSE.txt'
    expect(cacheControlOf(relpath, cc, [], false)).toBe(cacheControlOf(relpath, cc, []))
    expect(cacheControlOf(relpath, cc, [], false)).toBe(cc.immutable)
  })

  it('lets a user rule win over every built-in rule', () => {
    const rules = options({ cacheControl: { rules: { '**/*.js': 'no-store', 'fed-mods.json': 'max-age=5' } } }).cacheControl
    expect(cacheControlOf('js/main.3f2a1b9c0d.js', rules, [], true)).toBe('no-store')
    expect(cacheControlOf('fed-mods.json', rules, ['fed-mods.json'])).toBe('max-age=5')
  })
})

describe('the name heuristic, for files no bundler vouched for (the CLI)', () => {
  it.each(HASHED_NAMES)('reads %s as content-hashed', (relpath) => expect(hasContentHash(relpath)).toBe(true))

  it.each(UNHASHED_NAMES)('reads %s as not content-hashed', (relpath) => expect(hasContentHash(relpath)).toBe(false))

  it('finds no hash in the name itself or the extension', () => {
    expect(hasContentHash('abcdef0123456789.js')).toBe(false)
    expect(hasContentHash('main.ABCDEF123')).toBe(false)
  })

  it('stays fast on long word-like names', () => {
    const started = performance.now()
    expect(hasContentHash(`x.${'a'.repeat(60)}_.js`)).toBe(false)
    expect(hasContentHash(`${'Ab'.repeat(30)}-.js`)).toBe(false)
    expect(performance.now() - started).toBeLessThan(50)
  })
})

describe('entrypoint warnings', () => {
  const plan = (relpaths: string[], extra = {}) =>
    planUpload(
      relpaths.map((relpath) => file(relpath)),
      options(extra),
      flatLayout,
    )

  it('say nothing when every entrypoint is in the build', () => {
    expect(entrypointWarnings(plan(['fed-mods.json', 'a.js']), ['fed-mods.json'])).toEqual([])
  })

  it('name the near misses of a missing entrypoint', () => {
    const [warning] = entrypointWarnings(plan(['federation/fed-mods.json', 'a.js']), ['fed-mods.json'])
    expect(warning).toMatch(/fed-mods\.json.*not in the build/)
    expect(warning).toContain('Found federation/fed-mods.json')
  })

  it('say when there is no near miss where one is expected, and when include/exclude left the entrypoint out', () => {
    expect(entrypointWarnings(plan(['remoteEntry.js', 'a.js']), ['fed-mods.json'])[0]).toContain('No **/fed-mods.json')
    expect(entrypointWarnings(plan(['a.js']), ['entry.json'])[0]).toContain('No **/entry.json')
    expect(entrypointWarnings(plan(['fed-mods.json', 'a.js'], { exclude: ['*.json'] }), ['fed-mods.json'])[0]).toContain('left out by `include`/`exclude`')
  })
})

describe('entrypoint warnings, where they matter', () => {
  const plan = (relpaths: string[]) =>
    planUpload(
      relpaths.map((relpath) => file(relpath)),
      options(),
      flatLayout,
    )

  it('say nothing of a missing fed-mods.json in an app without module federation (a plain Vite app)', () => {
    expect(entrypointWarnings(plan(['index.html', 'assets/index-BxY7_a9Q.js']), ['fed-mods.json'])).toEqual([])
  })

  it('warn when module federation is at work, or of a near miss in another case or folder', () => {
    expect(entrypointWarnings(plan(['remoteEntry.js', 'js/a.js']), ['fed-mods.json'])).toHaveLength(1)
    expect(entrypointWarnings(plan(['mf-manifest.json']), ['fed-mods.json'])).toHaveLength(1)
    expect(entrypointWarnings(plan(['Fed-Mods.json']), ['fed-mods.json'])[0]).toContain('Found Fed-Mods.json')
    expect(entrypointWarnings(plan(['dist/fed-mods.json']), ['fed-mods.json'])[0]).toContain('Found dist/fed-mods.json')
  })

  it('warn once per process, not on every rebuild', () => {
    const lines: string[] = []
    const logger = { ...silentLogger, warn: (line: string) => lines.push(line) }
    for (let rebuild = 0; rebuild < 3; rebuild++) warnOfEntrypoints(plan(['remoteEntry.js', 'once/fed-mods.json']), ['fed-mods.json'], logger)
    expect(lines).toHaveLength(1)
  })
})

describe('planUpload', () => {
  const files = ['fed-mods.json', 'b.js', 'a/index.html', 'x.map', 'a.css'].map((relpath) => file(relpath))

  it('puts the entrypoint after every asset, and everything else in a stable order', () => {
    const plan = planUpload(files, options(), flatLayout)
    expect(plan.assets.map((f) => f.relpath)).toEqual(['a.css', 'a/index.html', 'b.js', 'x.map'])
    expect(plan.entrypoints.map((f) => f.key)).toEqual(['data/inventory/fed-mods.json'])
  })

  it('names versioned keys the way valpop does', () => {
    const plan = planUpload([file('a:b/c d.js')], options(), versionedLayout)
    expect(plan.assets[0]!.key).toBe('data:inventory:1700000000:a:b/c d.js')
  })

  it('leaves out what include/exclude say', () => {
    const plan = planUpload(files, options({ exclude: ['**/*.map'], include: ['**/*.{js,json,map}'] }), flatLayout)
    expect(plan.assets.map((f) => f.relpath)).toEqual(['b.js'])
    expect(plan.excluded.map((f) => f.relpath).sort()).toEqual(['a.css', 'a/index.html', 'x.map'])
  })

  it('publishes several entrypoints in the order given', () => {
    const plan = planUpload(files, options({ entrypoint: ['fed-mods.json', 'a/index.html'] }), flatLayout)
    expect(plan.entrypoints.map((f) => f.relpath)).toEqual(['fed-mods.json', 'a/index.html'])
  })
})
