import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { LARGE_BUILD_FILES, READING_BUILD_V8_FLAGS, SMALL_BUILD_V8_FLAGS } from '../../src/cli/commands'
import { runCli, workspaceWithBuild } from '../helpers/cli'
import { tempDir, writeTree } from '../helpers/fs'

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

/**
 * A push of 100,000 files peaked at ~3x the RSS of one of 2,000 with V8's speed-first heap sizing
 * (the bench's big-tree group): populate holds the young generation and sizes V8 for memory while it
 * reads the build (after, the young generation had grown already, and a full collection of the walk
 * had let the heap grow to 4x what was live); a large build stays so, a small build goes back to
 * speed-first sizing, and pop, which memory-first sizing slows, asks for nothing.
 */
it('populate holds the young generation and sizes V8 for memory while it reads the build, and after for a large one only; pop does not', async () => {
  const { work, dist } = await workspaceWithBuild()
  const spy = join(work, 'spy.cjs')
  // Builtins' ES exports follow their CommonJS object once synced: the bundle's import sees the spy.
  await writeFile(
    spy,
    `const v8 = require('node:v8'); const set = v8.setFlagsFromString; const asked = []
v8.setFlagsFromString = (flags) => { asked.push(flags); set(flags) }
require('node:module').syncBuiltinESMExports()
process.on('exit', () => process.stderr.write('V8 flags: ' + JSON.stringify(asked) + '\\n'))`,
  )
  const store = ['--app', 'my-app', '--store', `file:${join(work, 'store')}`]
  const env = { NODE_OPTIONS: `--require ${spy}` }
  const pushed = await runCli(['populate', dist, ...store], { env })
  expect(pushed.code).toBe(0)
  expect(pushed.stderr).toContain(`V8 flags: ${JSON.stringify([READING_BUILD_V8_FLAGS, SMALL_BUILD_V8_FLAGS])}`)
  const popped = await runCli(['pop', join(work, 'www'), ...store], { env })
  expect(popped.code).toBe(0)
  expect(popped.stderr).toContain('V8 flags: []')
  const files = Object.fromEntries(Array.from({ length: LARGE_BUILD_FILES }, (_, i) => [`js/chunk-${i}.js`, `${i}`]))
  const large = await writeTree(await tempDir(), { ...files, 'fed-mods.json': '{}' })
  const pushedLarge = await runCli(['populate', large, '--app', 'large-app', '--store', `file:${join(work, 'store')}`], { env })
  expect(pushedLarge.code, pushedLarge.stderr).toBe(0)
  expect(pushedLarge.stderr).toContain(`V8 flags: ${JSON.stringify([READING_BUILD_V8_FLAGS])}`)
}, 60_000)

/**
 * Started from the ES build, Node compiled and linked each of the CLI's modules as ES modules:
 * ~20 ms more CPU on every run. The bin only `require`s the CommonJS build (tsup.config.ts).
 */
it('the bin runs the CommonJS build of the CLI', async () => {
  const spy = join(await tempDir(), 'spy.cjs')
  await writeFile(spy, `process.on('exit', () => process.stderr.write('required: ' + JSON.stringify(Object.keys(require.cache)) + '\\n'))`)
  const result = await runCli(['--version'], { env: { NODE_OPTIONS: `--require ${spy}` } })
  expect(result.code, result.stderr).toBe(0)
  const required: string[] = JSON.parse(/required: (.*)/.exec(result.stderr)![1]!)
  expect(required.map((path) => path.split('/').slice(-2).join('/'))).toContain(`${DIST}/cli.cjs`)
})
