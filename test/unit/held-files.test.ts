import { describe, expect, it } from 'vitest'
import { indexIn } from '../../src/core/model/manifest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { newestBuild } from '../../src/core/store/builds'
import { heldFiles, listHeld } from '../../src/core/store/held-files'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { tempDir, writeTree } from '../helpers/fs'

describe('indexIn', () => {
  it('finds each path of a list that is not sorted, and no other', () => {
    const files = ['index.html', 'b.js', 'a.js', 'nested/c.css']
    expect(files.map((file) => indexIn(files, file))).toEqual([0, 1, 2, 3])
    expect(indexIn(files, 'c.js')).toBe(-1)
  })
})

describe('the files a flat store holds', () => {
  it('are listed for the build only, with the MD5 and headers the newest manifest vouches for', async () => {
    const store = createLocalStore(await tempDir())
    const outDir = await writeTree(await tempDir(), { 'fed-mods.json': '{}', 'main.js': 'export {}', 'old.js': 'gone' })
    const options = resolveOptions({ app: 'shop', timestamp: 1700000000 }, {})
    await populate({ store, options, files: await collectFiles(outDir) })
    // Entrypoints come last in a push's files: not sorted.
    const relpaths = ['main.js', 'new.js', 'fed-mods.json']
    const listing = await listHeld(store, 'shop', relpaths)
    expect([...listing.listed]).toEqual([1, 0, 1])
    const held = heldFiles(store, 'shop', listing, await newestBuild(store, 'shop'))
    expect(held.get('main.js')).toMatchObject({
      key: 'data/shop/main.js',
      size: 9,
      md5: expect.stringMatching(/^[0-9a-f]{32}$/),
      contentType: 'text/javascript; charset=utf-8',
      etag: expect.any(String),
    })
    expect(held.get('fed-mods.json')?.md5).toMatch(/^[0-9a-f]{32}$/)
    // Held by the store, but not a file of this build: of no use to its plan.
    expect(held.get('old.js')).toBeUndefined()
    expect(held.get('new.js')).toBeUndefined()
  })

  it('vouch for no MD5 without a newest manifest', async () => {
    const store = createLocalStore(await tempDir())
    await store.put('data/shop/main.js', Buffer.from('export {}'), { contentType: 'text/javascript', cacheControl: 'no-cache' })
    const held = heldFiles(store, 'shop', await listHeld(store, 'shop', ['main.js']), undefined)
    expect(held.get('main.js')).toEqual({ key: 'data/shop/main.js', size: 9, etag: expect.any(String), md5: undefined })
  })
})
