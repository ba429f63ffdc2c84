import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'

const SRC = 'src'
const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((path) => path.endsWith('.ts'))
const folders = [...new Set(files.map((path) => path.split('/').slice(0, -1).join('/')).filter(Boolean))].sort()

/** Every relative import of a source file, as a path from src/ (`stores/s3`, `core/model/options`). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8')
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((match) => match[1]!)
  return specifiers.map((specifier) => relative(SRC, join(SRC, file, '..', specifier)))
}

describe('the source map in CONTRIBUTING.md', () => {
  it('names every folder of src/', () => {
    const map = /## Source map\n+```\n([\s\S]*?)```/.exec(readFileSync('CONTRIBUTING.md', 'utf8'))![1]!
    for (const folder of folders) expect(map, `CONTRIBUTING.md's map lacks src/${folder}/`).toMatch(new RegExp(`^ *${folder.split('/').at(-1)}/ `, 'm'))
  })

  it('holds: src/core imports nothing outside it (stores, adapters, cli, the composed options)', () => {
    const outward = files
      .filter((file) => file.startsWith('core/'))
      .flatMap((file) => importsOf(file).map((target) => `${file} -> ${target}`))
      .filter((edge) => !/-> core\//.test(edge))
    expect(outward).toEqual([])
  })

  it('holds: src/stores imports from core/model, core/store and core/util only', () => {
    const inward = files
      .filter((file) => file.startsWith('stores/'))
      .flatMap((file) => importsOf(file).map((target) => `${file} -> ${target}`))
      .filter((edge) => /-> core\//.test(edge) && !/-> core\/(model|store|util)\//.test(edge))
    expect(inward).toEqual([])
  })

  it('holds: only layoutOf reads which family (flat or versioned) a store declared', () => {
    const readers = files.filter((file) => file.startsWith('core/') && /\.layout\b/.test(readFileSync(join(SRC, file), 'utf8')))
    expect(readers).toEqual(['core/store/layout.ts'])
  })
})
