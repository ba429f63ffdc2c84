import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without types
import { renderReadme } from '../../scripts/options-table.mjs'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

describe('README', () => {
  it('lists every option with its default, as the types document them', () => {
    expect(renderReadme(readme), 'run `node scripts/options-table.mjs` to regenerate the tables').toBe(readme)
  })
})
