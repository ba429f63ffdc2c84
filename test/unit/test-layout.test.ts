import { readdirSync } from 'node:fs'
import { expect, it } from 'vitest'

// vitest.config.ts runs test/unit/ and test/integration/ only: a test file anywhere else would never run.
it('every test file is in test/unit/ or test/integration/', () => {
  const elsewhere = readdirSync('test', { recursive: true, encoding: 'utf8' })
    .filter((path) => path.endsWith('.test.ts') && !/^(unit|integration)\//.test(path))
    .map((path) => `test/${path}`)
  expect(elsewhere, 'move each to test/unit/ (no server, no child process, no dist/) or test/integration/').toEqual([])
})
