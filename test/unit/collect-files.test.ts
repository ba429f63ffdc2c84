// The relpaths of a build do not depend on how its root is spelled; paths are kept flat.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectFiles } from '../../src/core/push/collect-files'
import { flatString } from '../../src/core/util/flat-string'

describe('collectFiles', () => {
  let root: string
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'collect-'))
    await mkdir(join(root, 'js/deep'), { recursive: true })
    await Promise.all(['index.html', 'js/a.js', 'js/deep/b.js'].map((relpath) => writeFile(join(root, relpath), relpath)))
  })
  afterAll(() => rm(root, { recursive: true, force: true }))

  it.each([
    ['as resolved', () => root],
    ['with a trailing slash', () => `${root}/`],
    ['through ..', () => `${join(root, 'js', '..')}/../${root.split('/').at(-1)}`],
    ['relative to the working directory', () => relative(process.cwd(), root)],
  ])('gives the same relpaths and paths for a root %s', async (_, spell) => {
    const files = await collectFiles(spell())
    expect(files.map((file) => [file.relpath, file.size]).sort()).toEqual([
      ['index.html', 10],
      ['js/a.js', 7],
      ['js/deep/b.js', 12],
    ])
    for (const file of files) expect(relative(root, file.path)).toBe(file.relpath)
  })
})

describe('flatString', () => {
  it('gives back the same characters, whatever they are', () => {
    for (const text of ['', 'a/b.js', 'caf\u0065\u0301.js', 'lone \ud800 surrogate', '"quoted"\\\n', `${'x'.repeat(40)}/${'y'.repeat(40)}`])
      expect(flatString(text)).toBe(text)
  })
})
