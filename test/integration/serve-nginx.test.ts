import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { columnsOf, entryOf, type Manifest } from '../../src/core/model/manifest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import { newestBuild } from '../../src/core/store/builds'
import type { Store } from '../../src/core/store/store'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { tempDir, writeTree } from '../helpers/fs'

/**
 * The README's recipes, with real nginx and Caddy: every file `pop` serves comes with the
 * Content-Type and Cache-Control its manifest entry records, and still does after `pop` switched
 * to the next build, with the server never reloaded.
 */

const APP = 'shop'
const LOOPBACK = '127.0.0.1'

/** A ConsoleDot-like build: hashed chunks (webpack and Vite names), fonts named by words, an entrypoint, files without a known type. */
const BUILD_1 = {
  'fed-mods.json': '{"shop":{"entry":["/apps/shop/js/shop.3f2a1b9c0d.js"]}}',
  'index.html': '<!doctype html><script src="assets/index-BxY7_a9Q.js"></script>',
  'app-info.json': '{"build":1}',
  'js/shop.3f2a1b9c0d.js': 'console.log(1)',
  'js/453.8f3c2a91e0b7d6c4a5f1.js': 'console.log(453)',
  'js/shop.3f2a1b9c0d.js.LICENSE.txt': 'MIT',
  'assets/index-BxY7_a9Q.js': 'console.log("vite")',
  'assets/index-DhTRlqEC.css': 'body{}',
  'fonts/OpenSans-SemiBold.woff2': 'font',
  'img/logo.svg': '<svg/>',
  'img/logo café (1).svg': '<svg/>',
  'downloads/report.pdf': 'pdf',
  'sourcemaps/shop.js.map': '{}',
  'data/table.wasm': 'wasm',
  LICENSE: 'MIT',
}
const BUILD_2 = {
  ...BUILD_1,
  'fed-mods.json': '{"shop":{"entry":["/apps/shop/js/shop.9e8d7c6b5a.js"]}}',
  'index.html': '<!doctype html><script src="assets/index-C0ffee12.js"></script>',
  'app-info.json': '{"build":2}',
  'js/shop.9e8d7c6b5a.js': 'console.log(2)',
  'js/shop.9e8d7c6b5a.js.LICENSE.txt': 'MIT',
  'assets/index-C0ffee12.js': 'console.log("vite 2")',
  'assets/index-EpQRstUv.css': 'body{color:red}',
  'js/lazy-BFeHIACX.js': 'console.log("lazy")',
}
for (const gone of ['js/shop.3f2a1b9c0d.js', 'js/shop.3f2a1b9c0d.js.LICENSE.txt', 'assets/index-BxY7_a9Q.js', 'assets/index-DhTRlqEC.css'])
  delete (BUILD_2 as Record<string, string>)[gone]

const installed = (command: string, versionFlag: string) => spawnSync(command, [versionFlag], { stdio: 'ignore' }).status === 0

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, LOOPBACK, resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A web server of the test's own, in the foreground, on a free loopback port; stopped by `stop()`. */
interface WebServer {
  url: string
  stop(): Promise<void>
}

async function startServer(command: string, args: string[], url: string, env: NodeJS.ProcessEnv = {}): Promise<WebServer> {
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } })
  let stderr = ''
  child.stderr?.on('data', (chunk) => {
    stderr += chunk
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  // Ready when it answers at all (a 404 will do); a server that exits or stays silent for 10 s fails the test.
  const giveUpAt = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${command} exited with ${child.exitCode}: ${stderr}`)
    const answered = await fetch(`${url}/`, { signal: AbortSignal.timeout(1000) }).then(
      () => true,
      () => false,
    )
    if (answered) return { url, stop }
    if (Date.now() > giveUpAt) {
      await stop()
      throw new Error(`${command} did not answer on ${url} within 10 s: ${stderr}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const K8S_SERVE = readFileSync(new URL('../../deploy/k8s-serve.yaml', import.meta.url), 'utf8')

/** The one code block of `language` in the README. */
const readmeBlock = (language: string) => new RegExp(`\`\`\`${language}\n([^]*?)\`\`\``).exec(README)![1]!

/** The nginx `default.conf` of deploy/k8s-serve.yaml's ConfigMap. */
const k8sServerBlock = () => /default\.conf: \|\n((?: {4}.*\n|\n)+)/.exec(K8S_SERVE)![1]!.replace(/^ {4}/gm, '')

/** A documented config as written, but for the test's directory, app and port. */
const localized = (config: string, www: string, port: number) =>
  config
    .replaceAll('/srv/www', www)
    .replaceAll('my-app', APP)
    .replace('listen 8080;', `listen ${LOOPBACK}:${port};`)
    .replace(':8080 {', `:${port} {\n  bind ${LOOPBACK}`)

/** nginx with `serverBlock` (the README's or the Deployment's); the rest of nginx.conf as small as nginx allows. */
const startNginx =
  (serverBlock: string) =>
  async (www: string, prefix: string): Promise<WebServer> => {
    const port = await freePort()
    await writeFile(
      join(prefix, 'nginx.conf'),
      `user ${userInfo().username};
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${localized(serverBlock, www, port)}
}
`,
    )
    return startServer('nginx', ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], `http://${LOOPBACK}:${port}`)
  }

/** The README's Caddy recipe, with no admin endpoint and nothing written outside `prefix`. */
async function startCaddy(www: string, prefix: string): Promise<WebServer> {
  const port = await freePort()
  await writeFile(join(prefix, 'Caddyfile'), `{\n  admin off\n  auto_https off\n}\n${localized(readmeBlock('caddyfile'), www, port)}`)
  const home = { HOME: prefix, XDG_DATA_HOME: join(prefix, 'data'), XDG_CONFIG_HOME: join(prefix, 'config') }
  return startServer('caddy', ['run', '--config', join(prefix, 'Caddyfile'), '--adapter', 'caddyfile'], `http://${LOOPBACK}:${port}`, home)
}

/**
 * Pushes `files` as build `timestamp` into the local store, and returns its manifest. A user's
 * rule gives the PDFs headers no path rule knows; another gives webpack's hashed LICENSE files the
 * default, as the plugin does.
 */
async function push(store: Store, files: Record<string, string>, timestamp: number): Promise<Manifest> {
  const options = resolveOptions(
    { app: APP, timestamp, cacheControl: { rules: { 'downloads/**': 'no-store', '**/*.LICENSE.txt': 'public, max-age=86400' } } },
    {},
  )
  await populate({ store, options, files: await collectFiles(await writeTree(await tempDir(), files)) })
  return (await newestBuild(store, APP))!.manifest!
}

/** Every file of the manifest as the server sends it, next to what the manifest records. */
async function servedHeaders(server: WebServer, manifest: Manifest) {
  return Promise.all(
    manifest.files.map(async (relpath) => {
      const response = await fetch(`${server.url}/apps/${APP}/${relpath}`, { signal: AbortSignal.timeout(5000) })
      await response.arrayBuffer()
      const entry = entryOf(manifest, relpath)!
      return {
        relpath,
        served: { status: response.status, contentType: response.headers.get('content-type'), cacheControl: response.headers.get('cache-control') },
        recorded: { status: 200, contentType: entry.contentType, cacheControl: entry.cacheControl },
      }
    }),
  )
}

const servers = [
  {
    name: 'nginx',
    config: 'server.nginx.conf',
    start: startNginx(readmeBlock('nginx')),
    available: installed('nginx', '-v'),
    install: 'apt-get install nginx-light',
  },
  {
    name: 'nginx with deploy/k8s-serve.yaml',
    config: 'server.nginx.conf',
    start: startNginx(k8sServerBlock()),
    available: installed('nginx', '-v'),
    install: 'apt-get install nginx-light',
  },
  { name: 'caddy', config: 'server.caddy', start: startCaddy, available: installed('caddy', 'version'), install: 'apt-get install caddy' },
]

for (const { name, config: configName, start, available, install } of servers) {
  describe.skipIf(!available)(`${name} serving a popped app${available ? '' : ` (skipped: ${name} is not installed; ${install})`}`, () => {
    let server: WebServer
    let www: string
    let store: Store
    beforeAll(async () => {
      store = createLocalStore(await tempDir())
      www = await tempDir()
      await mkdir(join(www, 'apps'))
      const prefix = await tempDir()
      // The include exists before the server starts, as the recipe's init container makes sure.
      await push(store, BUILD_1, 1_700_000_100)
      await pop({ store, app: APP, dest: join(www, 'apps', APP) })
      server = await start(www, prefix)
    })
    afterAll(async () => {
      await server?.stop()
    })

    it('sends every file with the headers its manifest entry records, before and after a switch, without a reload', async () => {
      const firstManifest = (await newestBuild(store, APP))!.manifest!
      const first = await servedHeaders(server, firstManifest)
      expect(first.length).toBe(Object.keys(BUILD_1).length)
      for (const file of first) expect(file.served, file.relpath).toEqual(file.recorded)

      const config = join(www, 'apps', `.${APP}.builds`, configName)
      const rules = await readFile(config, 'utf8')
      const manifest = await push(store, BUILD_2, 1_700_000_200)
      // Readers all through the switch: whichever build answers, its headers are the ones recorded (the two builds agree on shared names).
      const files = [...new Set([...firstManifest.files, ...manifest.files])].sort()
      const recorded = (relpath: string) => entryOf(manifest, relpath) ?? entryOf(firstManifest, relpath) ?? {}
      const both: Manifest = { ...manifest, files, details: columnsOf(files, Object.fromEntries(files.map((relpath) => [relpath, recorded(relpath)]))) }
      let switching = true
      const reads = (async () => {
        const answers = []
        for (let round = 0; switching && round < 1000; round++) answers.push(...(await servedHeaders(server, both)))
        return answers.filter((answer) => answer.served.status === 200)
      })()
      const report = await pop({ store, app: APP, dest: join(www, 'apps', APP) }).finally(() => {
        switching = false
      })
      const during = await reads
      expect(during.length).toBeGreaterThan(0)
      for (const file of during) expect(file.served, file.relpath).toEqual(file.recorded)
      expect(report.timestamp).toBe(1_700_000_200)
      // New hashed names, the same rules: the server needs no reload. Only the PDF has a rule of its own; the LICENSE files share one.
      expect(await readFile(config, 'utf8')).toBe(rules)
      expect(report.headerRules).toEqual({ exceptions: 1, reloadNeeded: false })
      const second = await servedHeaders(server, manifest)
      expect(second.length).toBe(Object.keys(BUILD_2).length)
      for (const file of second) expect(file.served, file.relpath).toEqual(file.recorded)
    })

    it('sends no Cache-Control with a file it does not have', async () => {
      const response = await fetch(`${server.url}/apps/${APP}/js/missing.0123abcd45.js`, { signal: AbortSignal.timeout(5000) })
      await response.arrayBuffer()
      expect(response.status).toBe(404)
      expect(response.headers.get('cache-control')).toBeNull()
    })
  })
}
