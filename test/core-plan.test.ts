import { describe, expect, it } from 'vitest'
import { flatLayout, versionedLayout } from '../src/core/layout'
import { resolveOptions } from '../src/core/options'
import { cacheControlOf, contentTypeOf, hasContentHash, planUpload } from '../src/core/plan'

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
    ['js/main.3f2a1b9c0d.js', cc.immutable],
    ['assets/index-BxY7_a9Q.js', cc.immutable],
    ['assets/index-DhTRlqEC.css', cc.immutable],
    ['chunk-ABCD2345.js', cc.immutable],
    ['453.8f3c2a91e0b7d6c4a5f1.js', cc.immutable],
    ['js/chunks/lazy-Bsle-cxw.js', cc.immutable],
    ['main-B-RNKoMk.css', cc.immutable],
    ['assets/logo café.44389336.svg', cc.immutable],
    ['main-LAIVXYRB.css', cc.immutable],
    ['my-component.js', cc.default],
    ['widgets/date-picker-long.js', cc.default],
    ['App-Component.js', cc.default],
    ['logo café.svg', cc.default],
  ])('%s gets %s', (relpath, value) => expect(cacheControlOf(relpath, cc, ['fed-mods.json'])).toBe(value))

  it('lets a user rule win over every built-in rule', () => {
    const rules = options({ cacheControl: { rules: { '**/*.js': 'no-store', 'fed-mods.json': 'max-age=5' } } }).cacheControl
    expect(cacheControlOf('js/main.3f2a1b9c0d.js', rules, [])).toBe('no-store')
    expect(cacheControlOf('fed-mods.json', rules, ['fed-mods.json'])).toBe('max-age=5')
  })

  it('finds no hash in the name itself or the extension', () => {
    expect(hasContentHash('abcdef0123456789.js')).toBe(false)
    expect(hasContentHash('main.ABCDEF123')).toBe(false)
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
