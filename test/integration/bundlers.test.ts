// Real builds of fixtures/app by every bundler, through each one's JS API, with the plugin from src.
// What a user sees is asserted: the files in the store, their headers, the manifest, the order of
// requests at the S3 server, and whether the build failed.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { createRsbuild } from '@rsbuild/core'
import { rspack } from '@rspack/core'
import { build as esbuild, context as esbuildContext } from 'esbuild'
import { rolldown } from 'rolldown'
import { rollup, watch as rollupWatch } from 'rollup'
import { createServer as createViteServer, build as viteBuild } from 'vite'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import webpack from 'webpack'
import { fixtureConfig as esbuildConfig } from '../../fixtures/app/esbuild.config'
import { APP, root as fixtureRoot } from '../../fixtures/app/plugins'
import { fixtureConfig as rolldownConfig } from '../../fixtures/app/rolldown.config'
import { fixtureConfig as rollupConfig } from '../../fixtures/app/rollup.config'
import { fixtureConfig as rspackConfig } from '../../fixtures/app/rspack.config'
import { fixtureConfig as viteConfig } from '../../fixtures/app/vite.config'
import { fixtureConfig as webpackConfig } from '../../fixtures/app/webpack.config'
import type { Options } from '../../src'
import { DEFAULT_CACHE_CONTROL } from '../../src/core/model/options'
import { contentTypeOf } from '../../src/core/push/plan'
import esbuildPlugin from '../../src/esbuild'
import { unpluginFactory } from '../../src/plugin'
import rolldownPlugin from '../../src/rolldown'
import rollupPlugin from '../../src/rollup'
import rspackPlugin from '../../src/rspack'
import vitePlugin from '../../src/vite'
import webpackPlugin from '../../src/webpack'
import { closedPort } from '../helpers/cli'
import { clearFaults, createBucket, getObject, injectFault, listObjects, requestLog, s3StoreOptions, s3StoreUrl } from '../helpers/s3'

type Bundler = 'vite' | 'rollup' | 'rolldown' | 'webpack' | 'rspack' | 'esbuild'
const BUNDLERS: Bundler[] = ['vite', 'rollup', 'rolldown', 'webpack', 'rspack', 'esbuild']
const distOf = (bundler: Bundler) => join(fixtureRoot, 'dist', bundler)

// biome-ignore lint/suspicious/noExplicitAny: webpack and Rspack compilers differ in types, not in this API
function run(compiler: any): Promise<void> {
  return new Promise((resolve, reject) =>
    compiler.run((error: Error | null, stats: { hasErrors(): boolean; toString(preset: string): string }) =>
      compiler.close(() => (error ? reject(error) : stats.hasErrors() ? reject(new Error(stats.toString('errors-only'))) : resolve())),
    ),
  )
}

/** One production build of the fixture; `entry` replaces its entry module (to break the build). */
const builders: Record<Bundler, (options: Options, entry?: string) => Promise<void>> = {
  async vite(options, entry) {
    const config = viteConfig([vitePlugin(options)])
    if (entry) config.build!.rolldownOptions!.input = entry
    await viteBuild({ configFile: false, ...config })
  },
  async rollup(options, entry) {
    const { output, ...input } = rollupConfig([rollupPlugin(options)])
    const bundle = await rollup({ ...input, input: entry ?? input.input, onLog() {} })
    await bundle.write(output)
    await bundle.close()
  },
  async rolldown(options, entry) {
    const { output, ...input } = rolldownConfig([rolldownPlugin(options)])
    const bundle = await rolldown({ ...input, input: entry ?? input.input })
    await bundle.write(output)
    await bundle.close()
  },
  webpack: (options, entry) => run(webpack(withEntry(webpackConfig([webpackPlugin(options)]), entry))),
  rspack: (options, entry) => run(rspack(withEntry(rspackConfig([rspackPlugin(options)]), entry))),
  async esbuild(options, entry) {
    const config = esbuildConfig([esbuildPlugin(options)])
    await esbuild({ ...config, entryPoints: entry ? [entry] : config.entryPoints, logLevel: 'silent' })
  },
}

const withEntry = <T extends { entry: unknown }>(config: T, entry?: string): T => (entry ? { ...config, entry: { main: entry } } : config)

async function build(bundler: Bundler, options: Options, entry?: string): Promise<void> {
  // Rollup and esbuild do not empty their output directory; a stale file would be pushed too.
  await rm(distOf(bundler), { recursive: true, force: true })
  await builders[bundler]({ app: APP, ...options }, entry)
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort()
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  )

let tmp: string
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'push-cache-bundlers-'))
})
afterAll(() => rm(tmp, { recursive: true, force: true }))
afterEach(() => clearFaults())

/** Every kind of file the fixture is made to produce, found in a build's file list. */
function expectFixtureFiles(files: string[]) {
  expect(files).toContain('fed-mods.json')
  expect(files).toContain('index.html')
  expect(files).toContain('app-info.json')
  expect(
    files.some((file) => /^assets\/logo café[.-]\w+\.svg$/.test(file)),
    'the spaced, non-ASCII image',
  ).toBe(true)
  expect(
    files.some((file) => /^js\/chunks\/lazy[.-][\w-]+\.js$/.test(file)),
    'the nested, lazily loaded chunk',
  ).toBe(true)
  expect(
    files.some((file) => file.endsWith('.css')),
    'the stylesheet',
  ).toBe(true)
  expect(files, 'the font copied from public/ as it is').toContain('fonts/Roboto-ExtraBold.woff2')
  expect(
    files.some((file) => /^(fonts\/OpenSans-SemiBold|assets\/OpenSans-SemiBold-[A-Z2-7]{8})\.woff2$/.test(file)),
    'the imported font, as `fonts/[name][ext]` (esbuild: hashed, as its `assetNames` say)',
  ).toBe(true)
}

/**
 * What each file's Cache-Control must be: the fixture's bundlers name everything under `js/` and
 * `assets/` with a hash, and fonts (`fonts/[name][ext]`, or copied from `public/`) without one,
 * whatever their names look like (`OpenSans-SemiBold` reads like a hash to a name check).
 */
function expectedCacheControl(file: string): string {
  if (['fed-mods.json', 'index.html', 'app-info.json'].includes(file)) return DEFAULT_CACHE_CONTROL.short
  return /^(js|assets)\//.test(file) ? DEFAULT_CACHE_CONTROL.immutable : DEFAULT_CACHE_CONTROL.default
}

describe.each(BUNDLERS)('%s', (bundler) => {
  test('pushes every file of the build to the local store, then its manifest', async () => {
    const store = join(tmp, `local-${bundler}`)
    await build(bundler, { store, timestamp: 1700000000 })

    const built = await filesUnder(distOf(bundler))
    expectFixtureFiles(built)
    expect(await filesUnder(join(store, 'data', APP))).toEqual(built)
    const fedMods = await readFile(join(store, 'data', APP, 'fed-mods.json'), 'utf8')
    const [entry] = JSON.parse(fedMods)[APP].entry
    expect(built).toContain(entry)

    const manifest = JSON.parse(await readFile(join(store, 'manifests', APP, '1700000000'), 'utf8'))
    expect(manifest).toMatchObject({ files: built, timestamp: 1700000000, entrypoints: ['fed-mods.json'] })
  })

  test('lands in S3 with the right keys and headers, the entrypoint after every other file', async () => {
    const bucket = await createBucket()
    await build(bundler, { store: s3StoreUrl(bucket), s3: s3StoreOptions(), timestamp: 1700000001 })

    const built = await filesUnder(distOf(bundler))
    expect((await listObjects(bucket)).map((object) => object.key)).toEqual(
      [...built.map((file) => `data/${APP}/${file}`), `manifests/${APP}/1700000001`].sort(),
    )

    const headers = async (file: string) => {
      const { contentType, cacheControl } = (await getObject(bucket, `data/${APP}/${file}`))!
      return { contentType, cacheControl }
    }
    const short = DEFAULT_CACHE_CONTROL.short
    expect(await headers('fed-mods.json')).toEqual({ contentType: 'application/json; charset=utf-8', cacheControl: short })
    expect(await headers('index.html')).toEqual({ contentType: 'text/html; charset=utf-8', cacheControl: short })
    expect(await headers('app-info.json')).toEqual({ contentType: 'application/json; charset=utf-8', cacheControl: short })
    // Immutable is what the bundler named with a hash, and nothing else.
    for (const file of built) expect(await headers(file), file).toEqual({ contentType: contentTypeOf(file), cacheControl: expectedCacheControl(file) })
    expect(await headers('fonts/Roboto-ExtraBold.woff2')).toEqual({ contentType: 'font/woff2', cacheControl: DEFAULT_CACHE_CONTROL.default })

    const puts = (await requestLog(bucket)).filter((request) => request.method === 'PUT' && request.status === 200 && !request.key.startsWith('locks/'))
    const entrypoint = puts.find((request) => request.key === `data/${APP}/fed-mods.json`)!
    const manifest = puts.find((request) => request.key === `manifests/${APP}/1700000001`)!
    const assets = puts.filter((request) => request !== entrypoint && request !== manifest)
    expect(assets).toHaveLength(built.length - 1)
    expect(entrypoint.start).toBeGreaterThanOrEqual(Math.max(...assets.map((request) => request.end)))
    expect(manifest.start).toBeGreaterThanOrEqual(entrypoint.end)
  })

  test('a failed upload fails the build and leaves no entrypoint and no manifest', async () => {
    const bucket = await createBucket()
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/index.html`, status: 403 })
    await expect(build(bundler, { store: s3StoreUrl(bucket), s3: s3StoreOptions() })).rejects.toThrow(/index\.html.*s3:\/\//s)

    const keys = (await listObjects(bucket)).map((object) => object.key)
    expect(keys).not.toContain(`data/${APP}/fed-mods.json`)
    expect(keys.filter((key) => key.startsWith('manifests/'))).toEqual([])
  })

  test('a build that fails (syntax error) pushes nothing', async () => {
    const broken = join(tmp, `broken-${bundler}.js`)
    await writeFile(broken, 'export const = ;\n')
    const store = join(tmp, `broken-store-${bundler}`)
    await expect(build(bundler, { store }, broken)).rejects.toThrow()
    expect(await exists(store)).toBe(false)
  })
})

describe('failure policy and modes', () => {
  test('a store that cannot be written fails the build with the cause', async () => {
    const notADirectory = join(tmp, 'a-file')
    await writeFile(notADirectory, '')
    await expect(build('vite', { store: join(notADirectory, 'store') })).rejects.toThrow(/a-file/)
  })

  test('failOnError: false logs the failed push and lets the build succeed, still without entrypoint or manifest', async () => {
    const bucket = await createBucket()
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/index.html`, status: 403 })
    await build('rollup', { store: s3StoreUrl(bucket), s3: s3StoreOptions(), failOnError: false })
    const keys = (await listObjects(bucket)).map((object) => object.key)
    expect(keys).not.toContain(`data/${APP}/fed-mods.json`)
    expect(keys.filter((key) => key.startsWith('manifests/'))).toEqual([])
  })

  test('disable: true gives a plugin that pushes nothing', async () => {
    const store = join(tmp, 'disabled')
    expect(unpluginFactory({ disable: true }, { framework: 'vite', versions: {} })).toEqual({ name: 'unplugin-push-cache' })
    await build('vite', { store, disable: true })
    expect(await filesUnder(distOf('vite'))).toContain('fed-mods.json')
    expect(await exists(store)).toBe(false)
  })

  test.each(BUNDLERS)('%s: a wrong option, store or channel fails the build before it bundles, naming the option', async (bundler) => {
    await expect(build(bundler, { app: 'in/ventory' })).rejects.toThrow(/`app`/)
    await expect(build(bundler, { store: 's4://x' })).rejects.toThrow(/`store` has the unknown scheme "s4:"/)
    await expect(build(bundler, { prune: { olderThan: 'soon' } })).rejects.toThrow(/`prune.olderThan`/)
    // Knowable without the network: only Valkey has channels.
    await expect(build(bundler, { store: join(tmp, 'channel'), announce: { channel: 'builds' } })).rejects.toThrow(
      /`announce.channel` needs a store with channels/,
    )
    expect(await filesUnder(distOf(bundler))).toEqual([])
  })

  test('a missing app fails the build, not the Vite dev server', async () => {
    const store = join(tmp, 'no-app')
    await expect(build('vite', { app: undefined, store })).rejects.toThrow(/`app` is missing/)
    await expect(build('webpack', { app: undefined, store })).rejects.toThrow(/`app` is missing/)
    const server = await createViteServer({
      configFile: false,
      ...viteConfig([vitePlugin({ store })]),
      server: { host: '127.0.0.1', port: await closedPort() },
      optimizeDeps: { noDiscovery: true },
    })
    await server.listen()
    await server.close()
    expect(await exists(store)).toBe(false)
  })

  test('a wrong store in the environment fails the build; a dev server warns once and runs', async () => {
    process.env.PUSH_CACHE_STORE = 'redis//:PW@cache:6379'
    const written: string[] = []
    const write = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write
    try {
      await expect(build('vite', {})).rejects.toThrow(/`store` is a malformed URL/)
      const server = await createViteServer({
        configFile: false,
        ...viteConfig([vitePlugin({})]),
        server: { host: '127.0.0.1', port: await closedPort() },
        optimizeDeps: { noDiscovery: true },
      })
      await server.listen()
      await server.close()
    } finally {
      process.stderr.write = write
      delete process.env.PUSH_CACHE_STORE
    }
    const warnings = written.filter((line) => line.includes('warning:'))
    expect(warnings).toEqual([
      expect.stringMatching(/`store` is a malformed URL \(redis\/\/:\*\*\*@cache:6379\).* The dev server runs; a build would fail\.\n$/),
    ])
    expect(written.join('')).not.toContain('PW')
  })

  test('a missing bucket fails the build with its fix said once', async () => {
    const options = { store: s3StoreUrl(`${await createBucket()}-missing`), s3: s3StoreOptions(), retries: 0 }
    const error = await build('rollup', options).catch((failure: Error) => failure)
    expect(error?.message).toMatch(/does not exist/)
    expect(error?.message.match(/Create/g)).toHaveLength(1)
  })

  test("a failed push is reported the bundler's way, in one line without a stack", async () => {
    const bucket = await createBucket()
    await injectFault({ bucket, method: 'PUT', key: `data/${APP}/index.html`, status: 403 })
    const options = { app: APP, store: s3StoreUrl(bucket), s3: s3StoreOptions(), retries: 0 }
    const oneLine = expect.stringMatching(/^Could not push index\.html to s3:\/\/t-\w+ at http:\/\/127\.0\.0\.1:\d+ .*HTTP 403.*\. Set AWS_ACCESS_KEY_ID/)

    // webpack and Rspack: in `compilation.errors`, which their CLIs print as `ERROR in <message>`.
    const compiler = webpack(webpackConfig([webpackPlugin(options)]))
    const stats = await new Promise<webpack.Stats>((resolve, reject) =>
      compiler.run((error, result) => compiler.close(() => (error ? reject(error) : resolve(result!)))),
    )
    expect(stats.compilation.errors.map((error) => error.message)).toEqual([oneLine])
    expect(stats.toString('errors-only')).not.toMatch(/^\s+at /m)

    // Rollup and Vite: `this.error`, so the plugin is named; esbuild: `errors` of `onEnd`.
    const rollupError = await build('rollup', options).catch((error: { plugin?: string; stack?: string; message: string }) => error)
    expect(rollupError).toMatchObject({ plugin: 'unplugin-push-cache', pluginCode: 'UPLOAD_FAILED', message: oneLine })
    expect(rollupError!.stack).not.toMatch(/^\s+at /m)
    const esbuildError = await build('esbuild', options).catch((error: { errors: { pluginName: string; text: string }[] }) => error)
    expect(esbuildError!.errors).toEqual([expect.objectContaining({ pluginName: 'unplugin-push-cache', text: oneLine })])
  })

  test.each([
    ['a good store', () => join(tmp, 'rsbuild-dev-store')],
    // `fec dev` with a wrong PUSH_CACHE_STORE: the dev server warns and runs.
    ['a store of an unknown scheme', () => 's4://bucket'],
  ])('an Rsbuild dev server that writes to disk pushes nothing, even with `watch: true`, with %s', async (label, storeOf) => {
    const store = storeOf()
    const distPath = join(tmp, `rsbuild-dev, ${label}`)
    const rsbuild = await createRsbuild({
      cwd: fixtureRoot,
      rsbuildConfig: {
        logLevel: 'warn',
        source: { entry: { index: './src/main.js' } },
        dev: { writeToDisk: true },
        server: { host: '127.0.0.1', port: await closedPort(), strictPort: true },
        output: { distPath: { root: distPath } },
        tools: { rspack: { plugins: [rspackPlugin({ app: APP, store, watch: true })] } },
      },
    })
    const { server } = await rsbuild.startDevServer()
    try {
      // Bounded: the first build lands on disk within seconds.
      for (let waited = 0; !(await exists(join(distPath, 'index.html'))) && waited < 30_000; waited += 100) await new Promise((r) => setTimeout(r, 100))
      expect(await exists(join(distPath, 'index.html'))).toBe(true)
    } finally {
      await server.close()
    }
    expect(await exists(store)).toBe(false)
  })

  test("a `mode: 'development'` build is pushed like any other", async () => {
    const store = join(tmp, 'development')
    await run(webpack({ ...webpackConfig([webpackPlugin({ app: APP, store, timestamp: 1700000005 })]), mode: 'development', devtool: false }))
    expect(await filesUnder(join(store, 'data', APP))).toEqual(await filesUnder(distOf('webpack')))
  })

  test('a Vite SSR build is not pushed', async () => {
    const store = join(tmp, 'ssr')
    const config = viteConfig([vitePlugin({ app: APP, store })])
    await viteBuild({ configFile: false, ...config, build: { ...config.build, ssr: 'src/main.js', outDir: 'dist/vite-ssr' } })
    expect(await exists(store)).toBe(false)
  })

  test('Rollup outputs to several directories are pushed as one build from their common directory', async () => {
    const store = join(tmp, 'multi-output')
    const common = join(tmp, 'multi-out')
    const { output, ...input } = rollupConfig([rollupPlugin({ app: APP, store, timestamp: 1700000004 })])
    const outputs = [
      { ...output, dir: join(common, 'esm') },
      { ...output, dir: join(common, 'cjs'), format: 'cjs' as const },
    ]
    // A file beside the output directories is not part of the build.
    await mkdir(common, { recursive: true })
    await writeFile(join(common, 'stray.txt'), 'not built')
    const bundle = await rollup({ ...input, onLog() {} })
    for (const options of outputs) await bundle.write(options)
    await bundle.close()

    const built = [
      ...(await filesUnder(join(common, 'esm'))).map((file) => `esm/${file}`),
      ...(await filesUnder(join(common, 'cjs'))).map((file) => `cjs/${file}`),
    ].sort()
    expect(await filesUnder(join(store, 'data', APP))).toEqual(built)
    expect(JSON.parse(await readFile(join(store, 'manifests', APP, '1700000004'), 'utf8')).files).toEqual(built)
  })

  test('Rollup watch mode pushes no build unless `watch: true`, and then each rebuild writes only what changed, as a newer build', async () => {
    const source = join(tmp, 'watched.js')
    const watchBuilds = async (options: Options) => {
      await writeFile(source, 'export const version = 1\n')
      const store = join(tmp, `watch-${options.watch ?? 'default'}`)
      const watcher = rollupWatch({
        input: source,
        plugins: [
          rollupPlugin({ app: APP, store, ...options }),
          {
            name: 'static-asset',
            generateBundle() {
              this.emitFile({ type: 'asset', fileName: 'static.txt', source: 'the same in every build' })
            },
          },
        ],
        output: { dir: join(tmp, `watch-out-${options.watch ?? 'default'}`), entryFileNames: '[name]-[hash].js' },
        watch: { buildDelay: 0 },
      })
      let builds = 0
      let firstCopy: Awaited<ReturnType<typeof stat>> | undefined
      await new Promise<void>((resolve, reject) =>
        watcher.on('event', async (event) => {
          if (event.code === 'ERROR') reject(event.error)
          // As the Rollup CLI does: closing the result runs `closeBundle`, where the plugin pushes.
          if (event.code === 'BUNDLE_END') await event.result.close()
          if (event.code !== 'END') return
          if (++builds === 2) return resolve()
          firstCopy = await stat(join(store, 'data', APP, 'static.txt')).catch(() => undefined)
          await writeFile(source, 'export const version = 2\n')
        }),
      )
      await watcher.close()
      return { store, firstCopy }
    }
    expect(await exists((await watchBuilds({})).store)).toBe(false)
    // Both builds pushed, the second one second newer at least: the flat layout keeps the first
    // build's chunk next to the second's, and the unchanged asset was not written again.
    const { store, firstCopy } = await watchBuilds({ watch: true })
    const pushed = await filesUnder(store)
    expect(pushed.filter((file) => /^data\/inventory\/watched-.+\.js$/.test(file))).toHaveLength(2)
    expect(pushed.filter((file) => file.startsWith(`manifests/${APP}/`))).toHaveLength(2)
    const secondCopy = await stat(join(store, 'data', APP, 'static.txt'))
    expect([secondCopy.ino, secondCopy.mtimeMs]).toEqual([firstCopy?.ino, firstCopy?.mtimeMs])
  })

  test('vite build --watch pushes nothing by default', async () => {
    const store = join(tmp, 'watch-vite')
    const config = viteConfig([vitePlugin({ app: APP, store })])
    // Vite closes each watch build after its END event: wait for the plugin to say it skipped it.
    const write = process.stderr.write
    const skipped = new Promise<void>((resolve) => {
      process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
        if (String(chunk).includes('[push-cache:vite] watch mode')) resolve()
        return write.call(process.stderr, chunk, ...rest)
      }) as typeof write
    })
    const watcher = (await viteBuild({ configFile: false, ...config, build: { ...config.build, watch: {} } })) as { close(): Promise<void> }
    try {
      await skipped
    } finally {
      process.stderr.write = write
      await watcher.close()
    }
    expect(await exists(store)).toBe(false)
  })

  test('webpack watch mode and esbuild rebuilds are not pushed by default', async () => {
    const store = join(tmp, 'watch-webpack')
    const compiler = webpack(webpackConfig([webpackPlugin({ app: APP, store })]))
    let watching: ReturnType<typeof compiler.watch> | undefined
    await new Promise<void>((resolve, reject) => {
      watching = compiler.watch({}, (error) => (error ? reject(error) : resolve()))
    })
    await new Promise((resolve) => watching!.close(resolve))
    expect(await exists(store)).toBe(false)

    // esbuild cannot tell a plugin about watch mode: a context's first build pushes, its rebuilds do not.
    const esbuildStore = join(tmp, 'rebuild-esbuild')
    const ctx = await esbuildContext({ ...esbuildConfig([esbuildPlugin({ app: APP, store: esbuildStore, timestamp: 1700000003 })]), logLevel: 'silent' })
    try {
      await ctx.rebuild()
      await rm(esbuildStore, { recursive: true })
      await ctx.rebuild()
    } finally {
      await ctx.dispose()
    }
    expect(await exists(esbuildStore)).toBe(false)
  })
})
