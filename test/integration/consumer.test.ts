import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { cp, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import packageJson from '../../package.json'
import { entryOf, parseManifest } from '../../src/core/model/manifest'
import { DEFAULT_CACHE_CONTROL } from '../../src/core/model/options'
import { closedPort } from '../helpers/cli'
import { tempDir } from '../helpers/fs'

const run = promisify(execFile)
const ROOT = new URL('../..', import.meta.url).pathname

/**
 * The toolchains a user brings, at the versions this repository pins. They are linked from its
 * node_modules rather than installed again: npm installs only the package under test, which keeps
 * this file within a minute on a loaded machine.
 */
const TOOLCHAIN = ['vite', 'webpack', 'webpack-cli', 'webpack-dev-server', '@rsbuild/core', 'typescript', '@types/node']

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  )

/**
 * What a user gets from npm: the packed tarball (built by `pretest`), installed into a fresh
 * project outside this repository, and built with real Vite, webpack (its CLI, its dev server, a
 * fec-shaped config) and Rsbuild.
 */
describe('the packed package in a fresh project', () => {
  let project: string
  let tarball: string
  // A user's shell, not vitest's NODE_ENV=test (with which Rsbuild, say, names files without hashes).
  const shellEnv = (env: Record<string, string> = {}) => ({ ...process.env, NODE_ENV: undefined, ...env })
  const node = (bin: string, args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, [join(project, 'node_modules', bin), ...args], { cwd: project, env: shellEnv(env) })

  beforeAll(async () => {
    project = await tempDir()
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', project], { cwd: ROOT })
    tarball = JSON.parse(stdout.slice(stdout.indexOf('[')))[0].filename
    await cp(join(ROOT, 'test/consumer'), project, { recursive: true })
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `./${tarball}`], { cwd: project })
    for (const name of TOOLCHAIN) {
      await mkdir(dirname(join(project, 'node_modules', name)), { recursive: true })
      await symlink(join(ROOT, 'node_modules', name), join(project, 'node_modules', name), 'dir')
    }
  }, 300_000)

  const storeFiles = async (app: string, store = '.push-cache') => (await readdir(join(project, store, 'data', app), { recursive: true })).sort()
  const manifest = async (app: string) => parseManifest(await readFile(join(project, '.push-cache/manifests', app, '1700000000'), 'utf8'), app, 1700000000)

  it('builds with `import pushCache from "unplugin-push-cache/vite"` in vite.config.ts', async () => {
    await node('vite/bin/vite.js', ['build'])
    const files = await storeFiles('consumer-vite')
    expect(files).toContain('fed-mods.json')
    expect(files).toContain('index.html')
    expect(files.some((file) => /^assets\/index-.+\.js$/.test(file))).toBe(true)
    expect((await manifest('consumer-vite')).generator).toBe(`unplugin-push-cache@${packageJson.version}`)
  })

  it("builds with `require('unplugin-push-cache/webpack')` in a CommonJS webpack.config.js", async () => {
    await run('node', ['build-webpack.js'], { cwd: project })
    expect(await storeFiles('consumer-webpack')).toEqual([expect.stringMatching(/^main\.[0-9a-f]+\.js$/)])
  })

  it('pushes a fec-shaped build with `webpack`: hashed chunks and source maps immutable, fonts by name not', async () => {
    await node('webpack-cli/bin/cli.js', ['-c', 'fec.webpack.config.js'])
    const files = await storeFiles('inventory')
    expect(files).toEqual(
      expect.arrayContaining([
        'fed-mods.json',
        'fonts/OpenSans-SemiBold.woff2',
        expect.stringMatching(/^exposed-\.\/RootApp\.[0-9a-f]+\.js$/),
        expect.stringMatching(/^inventory\.[0-9a-f]+\.js$/),
        expect.stringMatching(/^sourcemaps\/App\.[0-9a-f]+\.js\.map$/),
      ]),
    )
    const built = await manifest('inventory')
    expect(built.entrypoints).toEqual(['fed-mods.json'])
    const cacheControl = (pattern: RegExp) => files.filter((file) => pattern.test(file)).map((file) => entryOf(built, file)?.cacheControl)
    expect(cacheControl(/^fed-mods\.json$/)).toEqual([DEFAULT_CACHE_CONTROL.short])
    expect(cacheControl(/^fonts\//)).toEqual([DEFAULT_CACHE_CONTROL.default])
    expect(new Set(cacheControl(/\.js(\.map)?$/))).toEqual(new Set([DEFAULT_CACHE_CONTROL.immutable]))
  })

  it('reports a failed push as one webpack error: no stack, no mangled class name', async () => {
    const notADirectory = join(project, 'package.json')
    const failed = await node('webpack-cli/bin/cli.js', ['-c', 'fec.webpack.config.js'], { PUSH_CACHE_STORE: join(notADirectory, 'store') }).catch(
      (error: { code: number; stdout: string; stderr: string }) => error,
    )
    expect('code' in failed && failed.code).toBe(1)
    const output = `${failed.stdout}${failed.stderr}`
    expect(output).toMatch(/^ERROR in .+package\.json\/store/m)
    expect(output).not.toMatch(/_class|^\s+at /m)
  })

  it('`webpack serve` writing to disk, with `watch: true`, pushes nothing and says so', async () => {
    const server = spawn(process.execPath, [join(project, 'node_modules/webpack-cli/bin/cli.js'), 'serve', '-c', 'serve.webpack.config.js'], {
      cwd: project,
      env: shellEnv({ PORT: String(await closedPort()) }),
    })
    let output = ''
    for (const stream of [server.stdout, server.stderr]) stream.on('data', (chunk) => (output += chunk))
    try {
      // Bounded: the first build lands on disk within seconds.
      for (let waited = 0; !(await exists(join(project, 'dist-serve/main.js'))) && waited < 30_000; waited += 100) await new Promise((r) => setTimeout(r, 100))
      expect(await exists(join(project, 'dist-serve/main.js')), output).toBe(true)
    } finally {
      server.kill()
      await once(server, 'exit')
    }
    expect(await exists(join(project, '.push-cache-serve'))).toBe(false)
    expect(output).toContain('[push-cache:webpack] dev server: nothing is pushed')
  })

  it('builds with Rsbuild, the plugin in `tools.rspack.plugins`', async () => {
    await node('@rsbuild/core/bin/rsbuild.js', ['build'])
    const files = await storeFiles('consumer-rsbuild')
    expect(files).toContain('index.html')
    const scripts = files.filter((file) => /^static\/js\/index\.[0-9a-f]+\.js$/.test(file))
    expect(scripts).toHaveLength(1)
    expect(entryOf(await manifest('consumer-rsbuild'), scripts[0]!)?.cacheControl).toBe(DEFAULT_CACHE_CONTROL.immutable)
  })

  it('type-checks the documented imports with `skipLibCheck: false`, as an ES module and as CommonJS (node16)', async () => {
    await node('typescript/bin/tsc', ['-p', 'tsconfig.json'])
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
