import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { expect, it } from 'vitest'

const CORE = resolve(import.meta.dirname, '../src/core')
const sources = (readdirSync(CORE, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
  .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
  .map((entry) => join(entry.parentPath, entry.name))

it('core imports nothing from the stores, the adapters, the CLI or the composed options', () => {
  const outside = sources.flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']*)'/g)]
      .map((match) => resolve(dirname(file), match[1]!))
      .filter((target) => relative(CORE, target).startsWith('..'))
      .map((target) => `${relative(CORE, file)} -> ${relative(resolve(CORE, '..'), target)}`),
  )
  expect(outside).toEqual([])
})

it('only layoutOf reads which family a store declared', () => {
  const readers = sources.filter((file) => /\.layout\b/.test(readFileSync(file, 'utf8'))).map((file) => relative(CORE, file))
  expect(readers).toEqual(['store/layout.ts'])
})
