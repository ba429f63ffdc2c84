import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect, it } from 'vitest'

const DIST = 'dist'

/**
 * The AWS SDK is CommonJS: an ES module that `import`s it makes Node parse it again for its export
 * names, ~100 ms of CPU on every S3 command. The ES build `require`s it (tsup.config.ts).
 */
it('no ES module of the build imports the AWS SDK', async () => {
  const modules = (await readdir(DIST)).filter((name) => name.endsWith('.js'))
  const importing: string[] = []
  for (const name of modules) {
    const code = await readFile(join(DIST, name), 'utf8')
    if (/\bfrom\s*["']@(aws-sdk|smithy)\/|\bimport\(\s*["']@(aws-sdk|smithy)\//.test(code)) importing.push(name)
  }
  expect(modules.length).toBeGreaterThan(0)
  expect(importing).toEqual([])
})
