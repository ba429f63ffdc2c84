import { execFile } from 'node:child_process'
import { cp, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import packageJson from '../package.json'

const run = promisify(execFile)
const ROOT = new URL('..', import.meta.url).pathname

/**
 * What a user gets from npm: the packed tarball (built by `pretest`), installed with a real Vite
 * and a real webpack into a fresh project outside this repository.
 */
describe('the packed package in a fresh project', () => {
  let project: string
  let tarball: string

  beforeAll(async () => {
    project = await mkdtemp(join(tmpdir(), 'push-cache-consumer-'))
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', project], { cwd: ROOT })
    tarball = JSON.parse(stdout.slice(stdout.indexOf('[')))[0].filename
    await cp(join(ROOT, 'test/consumer'), project, { recursive: true })
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
    const { devDependencies } = packageJson
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', `./${tarball}`, `vite@${devDependencies.vite}`, `webpack@${devDependencies.webpack}`],
      { cwd: project },
    )
  }, 300_000)

  const storeFiles = async (app: string) => (await readdir(join(project, '.push-cache/data', app), { recursive: true })).sort()

  it('builds with `import pushCache from "unplugin-push-cache/vite"` in vite.config.ts', async () => {
    await run('npx', ['vite', 'build'], { cwd: project })
    const files = await storeFiles('consumer-vite')
    expect(files).toContain('fed-mods.json')
    expect(files).toContain('index.html')
    expect(files.some((file) => /^assets\/index-.+\.js$/.test(file))).toBe(true)
    const manifest = JSON.parse(await readFile(join(project, '.push-cache/manifests/consumer-vite/1700000000'), 'utf8'))
    expect(manifest.generator).toBe(`unplugin-push-cache@${packageJson.version}`)
  })

  it("builds with `require('unplugin-push-cache/webpack')` in a CommonJS webpack.config.js", async () => {
    await run('node', ['build-webpack.js'], { cwd: project })
    expect(await storeFiles('consumer-webpack')).toEqual([expect.stringMatching(/^main\.[0-9a-f]+\.js$/)])
  })

  it('passes publint and Are the Types Wrong (every entry, ESM and CJS, node10/node16/bundler)', async () => {
    await run('npx', ['publint', '--strict'], { cwd: ROOT })
    await run('npx', ['attw', `${project}/${tarball}`], { cwd: ROOT })
  })

  it('runs `npx push-cache --help`', async () => {
    const { stdout } = await run('npx', ['push-cache', '--help'], { cwd: project })
    expect(stdout).toMatch(/populate/)
    expect(stdout).toMatch(/pop/)
  })
})
