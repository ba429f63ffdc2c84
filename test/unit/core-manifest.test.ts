// Manifests as stored: `files` and `timestamp` as valpop reads them, the per-file details as columns.
import { describe, expect, it } from 'vitest'
import { columnsOf, entryOf, MANIFEST_MAX_BYTES, type Manifest, parseManifest, serializeManifest, shareStrings } from '../../src/core/model/manifest'

const NOW = 1_700_000_000
const IMMUTABLE = 'public, max-age=31536000, immutable'
const SHORT = 'public, max-age=60, stale-while-revalidate=300'

/** Details as earlier versions wrote them: a map keyed by relpath. */
const entries = {
  'fed-mods.json': { size: 12, contentType: 'application/json; charset=utf-8', cacheControl: SHORT, md5: 'a'.repeat(32), etag: 'e1' },
  'js/a.1a2b3c4d.js': { size: 40, contentType: 'text/javascript; charset=utf-8', cacheControl: IMMUTABLE, md5: 'b'.repeat(32), version: NOW - 60 },
  'js/b.5e6f7a8b.js': { size: 0, contentType: 'text/javascript; charset=utf-8', cacheControl: IMMUTABLE },
}
const files = Object.keys(entries)
const manifest: Manifest = {
  files,
  timestamp: NOW,
  image: 'quay.io/app:1',
  entrypoints: ['fed-mods.json'],
  generator: 'unplugin-push-cache@0.0.0',
  details: columnsOf(files, entries),
}

/** A build of `count` files as our pushes record it. */
function manyFiles(count: number): Manifest {
  const files = Array.from({ length: count }, (_, index) => `js/chunk-${index.toString(16).padStart(8, '0')}.js`)
  const entries = Object.fromEntries(
    files.map((relpath, index) => [
      relpath,
      {
        size: 300 + index,
        contentType: 'text/javascript; charset=utf-8',
        cacheControl: IMMUTABLE,
        md5: index.toString(16).padStart(32, '0'),
        etag: `${index}-18c5`,
      },
    ]),
  )
  return { files, timestamp: NOW, entrypoints: ['fed-mods.json'], generator: 'unplugin-push-cache@0.0.0', details: columnsOf(files, entries) }
}

describe('manifests as stored', () => {
  it('write the details as columns beside `files` and `timestamp`, and read back what was written', () => {
    const text = serializeManifest(manifest).toString()
    const stored = JSON.parse(text)
    // What valpop reads is there as before.
    expect(stored).toMatchObject({ files: manifest.files, timestamp: NOW, image: 'quay.io/app:1' })
    expect(stored.entries).toBeUndefined()
    expect(stored.details).toEqual({
      size: [12, 40, 0],
      md5: ['a'.repeat(32), 'b'.repeat(32), null],
      contentType: [0, 1, 1],
      contentTypes: ['application/json; charset=utf-8', 'text/javascript; charset=utf-8'],
      cacheControl: [0, 1, 1],
      cacheControls: [SHORT, IMMUTABLE],
      etag: ['e1', null, null],
      version: [null, NOW - 60, null],
    })
    expect(parseManifest(text, 'k', NOW, NOW)).toEqual(manifest)
  })

  it('read the map of entries that earlier versions wrote', () => {
    const { details, ...fields } = manifest
    const legacy = JSON.stringify({ ...fields, entries })
    expect(parseManifest(legacy, 'k', NOW, NOW)).toEqual(manifest)
  })

  it('keep a 250,000-file build far below the limit, about 100 B a file', () => {
    const text = serializeManifest(manyFiles(250_000)).toString()
    expect(Buffer.byteLength(text) / 250_000).toBeLessThan(110)
    expect(Buffer.byteLength(text)).toBeLessThan(MANIFEST_MAX_BYTES / 4)
    const back = parseManifest(text, 'k', NOW, NOW)
    expect(back.files).toHaveLength(250_000)
    expect(entryOf(back, 'js/chunk-0003d08f.js')).toEqual({
      size: 300 + 0x3d08f,
      contentType: 'text/javascript; charset=utf-8',
      cacheControl: IMMUTABLE,
      md5: (0x3d08f).toString(16).padStart(32, '0'),
      etag: `${0x3d08f}-18c5`,
    })
  })

  it("find a file's details whether or not `files` is sorted", () => {
    const unsorted = {
      files: ['b.js', 'a.js', 'c.js'],
      details: columnsOf(['b.js', 'a.js', 'c.js'], { 'a.js': { size: 1 }, 'b.js': { size: 2 }, 'c.js': { size: 3 } }),
    }
    expect(['a.js', 'b.js', 'c.js', 'd.js'].map((relpath) => entryOf(unsorted, relpath)?.size)).toEqual([1, 2, 3, undefined])
    expect(['fed-mods.json', 'js/b.5e6f7a8b.js', 'js/c.js'].map((relpath) => entryOf(manifest, relpath)?.size)).toEqual([12, 0, undefined])
  })

  it('write a manifest of many files as the JSON of it, in pieces', () => {
    const many = manyFiles(20_000)
    expect(serializeManifest(many).toString()).toBe(`${JSON.stringify(many)}\n`)
  })

  it('write the bytes of names beyond ASCII exactly, however the chunks split them', () => {
    const many = manyFiles(20_000)
    many.files = many.files.map((relpath, index) => `${'é😀'.repeat(index % 7)}${relpath}${index % 5 === 0 ? '\ud800' : ''}`)
    const body = serializeManifest(many)
    expect(body.toString()).toBe(`${JSON.stringify(many)}\n`)
    expect(body.length).toBe(Buffer.byteLength(`${JSON.stringify(many)}\n`))
  })

  it.each([
    ['not columns', { details: [] }, '`details` is not a set of columns'],
    [
      'a column too short',
      { details: { size: [1], md5: [null, null], contentType: [null, null], contentTypes: [], cacheControl: [null, null], cacheControls: [] } },
      '`details.size` is not a column of 2 values',
    ],
    [
      'a header index out of its table',
      { details: { size: [1, 2], md5: [null, null], contentType: [0, 1], contentTypes: ['text/css'], cacheControl: [null, null], cacheControls: [] } },
      '`details.contentType` is not a column of 2 values',
    ],
    [
      'a negative size',
      { details: { size: [-1, 2], md5: [null, null], contentType: [null, null], contentTypes: [], cacheControl: [null, null], cacheControls: [] } },
      '`details.size` is not a column of 2 values',
    ],
    [
      'a version that is not a number',
      {
        details: {
          size: [1, 2],
          md5: [null, null],
          contentType: [null, null],
          contentTypes: [],
          cacheControl: [null, null],
          cacheControls: [],
          version: ['1', null],
        },
      },
      '`details.version` is not a column of 2 values',
    ],
  ])('refuse columns with %s, saying which', (_, fields, why) => {
    const text = JSON.stringify({ files: ['a.js', 'b.js'], timestamp: NOW, ...fields })
    expect(() => parseManifest(text, 'manifests/a/1700000000', NOW, NOW)).toThrow(`Manifest manifests/a/1700000000 cannot be read: ${why}`)
  })
})

describe('a manifest read beside a build', () => {
  it('shares its strings with the build without changing a name or an MD5, and keeps an MD5 it does not record as hashed', () => {
    const read = parseManifest(serializeManifest(manifest).toString(), 'k', NOW, NOW)
    // Unsorted, with a name the manifest does not know: as the plan's entrypoints come last.
    const kept = shareStrings(read, ['index.html', 'js/a.1a2b3c4d.js', 'js/b.5e6f7a8b.js', 'fed-mods.json'])
    expect(read).toEqual(manifest)
    expect(kept('fed-mods.json', 'a'.repeat(32))).toBe('a'.repeat(32))
    expect(kept('js/a.1a2b3c4d.js', 'c'.repeat(32))).toBe('c'.repeat(32))
    // Recorded without an MD5, and not recorded at all.
    expect(kept('js/b.5e6f7a8b.js', 'd'.repeat(32))).toBe('d'.repeat(32))
    expect(kept('index.html', 'e'.repeat(32))).toBe('e'.repeat(32))
    const withoutDetails = { files: ['a.js'] }
    expect(shareStrings(withoutDetails, ['a.js'])('a.js', 'f'.repeat(32))).toBe('f'.repeat(32))
    expect(withoutDetails.files).toEqual(['a.js'])
  })
})
