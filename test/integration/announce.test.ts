import { mkdir } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { type AddressInfo, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { build } from 'esbuild'
import { Redis } from 'iovalkey'
import { describe, expect, it, onTestFinished } from 'vitest'
import { fixtureConfig } from '../../fixtures/app/esbuild.config'
import { APP } from '../../fixtures/app/plugins'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import type { Store } from '../../src/core/store/store'
import { createLogger } from '../../src/core/util/logger'
import esbuildPlugin from '../../src/esbuild'
import { type Options, resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { createS3Store } from '../../src/stores/s3'
import { createValkeyStore } from '../../src/stores/valkey'
import { BUILD, closedPort, deployArgs, parseReport, runCli, workspaceWithBuild } from '../helpers/cli'
import { tempDir, tree, writeTree } from '../helpers/fs'
import { createBucket, listObjects, s3StoreOptions, s3StoreUrl } from '../helpers/s3'
import { uniqueApp, valkeyEnv, valkeyUrl } from '../helpers/valkey'
import { getVersion, uniqueName, versionOf, vwatchEnv, vwatchStats, waitForStats } from '../helpers/vwatch'

/** Pushes BUILD as build `timestamp` of `app` with these options; resolves to the report and every log line. */
async function pushBuild(store: Store, options: Options & { app: string; timestamp: number }) {
  const lines: string[] = []
  const dist = await writeTree(await tempDir(), BUILD)
  const report = await populate({
    store,
    options: resolveOptions(options, {}),
    files: await collectFiles(dist),
    logger: createLogger('test', false, (line) => lines.push(line)),
  })
  return { report, lines }
}

const localStore = async () => createLocalStore(await tempDir())

describe('announce after a push', () => {
  it('announces the build to vwatch: a long-poll waiting on the previous build wakes with the new one and what it is', async () => {
    const bucket = await createBucket()
    const store = createS3Store(s3StoreUrl(bucket), s3StoreOptions())
    const app = uniqueApp()
    const announce = { vwatch: vwatchEnv().write }
    await pushBuild(store, { app, timestamp: 100, announce })
    const polling = getVersion(`push-cache/${app}`, { version: '100', timeout: '30s' })
    await waitForStats(`push-cache/${app}`, (stats) => stats.waiting === 1)

    const { report } = await pushBuild(store, { app, timestamp: 200, image: 'quay.io/my-org/my-app:abc1234', announce })
    const woken = await polling
    expect(report.announce).toEqual({ vwatch: 'ok' })
    expect(versionOf(woken)).toBe('200')
    expect(woken.headers.get('last-modified')).toBe(new Date(200_000).toUTCString())
    expect(await woken.json()).toEqual({
      app,
      timestamp: 200,
      manifestKey: `manifests/${app}/200`,
      image: 'quay.io/my-org/my-app:abc1234',
      store: store.display,
    })
    // Announced only once the build was complete in the store.
    expect((await listObjects(bucket, `manifests/${app}/`)).map((object) => object.key)).toEqual([`manifests/${app}/100`, `manifests/${app}/200`])
    await store.close()
  })

  it('the plugin announces the build it pushed (esbuild)', async () => {
    const name = uniqueName()
    const store = await tempDir()
    const plugin = esbuildPlugin({ app: APP, store, timestamp: 1700000000, announce: { vwatch: vwatchEnv().write, name } })
    await build({ ...fixtureConfig([plugin]), outdir: await tempDir(), logLevel: 'silent' })
    expect(await tree(join(store, 'manifests'))).toEqual([`${APP}/1700000000`])
    const announced = await getVersion(name)
    expect(versionOf(announced)).toBe('1700000000')
    expect(await announced.json()).toMatchObject({ app: APP, manifestKey: `manifests/${APP}/1700000000`, store })
  })

  it('populate --announce-vwatch / --announce-name (or PUSH_CACHE_ANNOUNCE_VWATCH) announces, and --json reports it', async () => {
    const { work, dist } = await workspaceWithBuild()
    const name = uniqueName()
    const store = ['--app', 'my-app', '--store', join(work, 'cache')]
    const flagged = await runCli(['populate', dist, ...store, '--timestamp', '100', '--announce-vwatch', vwatchEnv().write, '--announce-name', name, '--json'])
    expect(flagged.code, flagged.stderr).toBe(0)
    expect(parseReport(flagged.stdout)).toMatchObject({ ok: true, announce: { vwatch: 'ok' } })
    expect(flagged.stderr).toContain(`announced build 100 of my-app to vwatch ${vwatchEnv().write}/v1/versions/${name}`)

    const fromEnv = await runCli(['populate', dist, ...store, '--timestamp', '200', '--announce-name', name], {
      env: { PUSH_CACHE_ANNOUNCE_VWATCH: vwatchEnv().write },
    })
    expect(fromEnv.code, fromEnv.stderr).toBe(0)
    expect(await vwatchStats(name)).toMatchObject({ puts: 2, version: '200' })
  })

  it('the Kubernetes Job in deploy/ announces the build it pushed (its args as written, run against a local store)', async () => {
    const { work, dist } = await workspaceWithBuild()
    const args = await deployArgs('k8s-job.yaml', 'push-cache')
    const [store, vwatch] = ['--store', '--announce-vwatch'].map((flag) => args[args.indexOf(flag) + 1])
    // Only where it runs changes: the build directory, the store and vwatch of this test.
    const local = args.map((arg) =>
      arg === '/srv/dist'
        ? dist
        : arg === store
          ? join(work, 'cache')
          : arg === vwatch
            ? vwatchEnv().write
            : arg.replace('$(FRONTEND_IMAGE)', 'quay.io/my-org/my-app:abc1234'),
    )
    const result = await runCli([...local, '--json'])
    expect(result.code, result.stderr).toBe(0)
    const report = parseReport(result.stdout)
    expect(report).toMatchObject({ ok: true, uploaded: 4, announce: { vwatch: 'ok' } })
    expect(await vwatchStats('push-cache/my-app')).toMatchObject({ version: String(report.timestamp) })
  })

  it('publishes the build on a Valkey channel once its manifest is written (populate --announce-channel)', async () => {
    const { dist } = await workspaceWithBuild()
    const app = uniqueApp()
    const channel = `push-cache:builds:${app}`
    const subscriber = new Redis(valkeyEnv().standalone)
    const reader = new Redis(valkeyEnv().standalone)
    onTestFinished(() => {
      subscriber.disconnect()
      reader.disconnect()
    })
    await subscriber.subscribe(channel)
    // What a watcher sees when the message arrives: the manifest it names must already be there.
    const received = new Promise<{ message: string; manifest: string | null }>((resolve) =>
      subscriber.once('message', async (_, message) => resolve({ message, manifest: await reader.get(`manifest:${app}:300`) })),
    )

    const result = await runCli(['populate', dist, '--app', app, '--store', valkeyUrl(), '--timestamp', '300', '--announce-channel', channel, '--json'])
    expect(result.code, result.stderr).toBe(0)
    expect(parseReport(result.stdout)).toMatchObject({ announce: { channel: 'ok' } })
    expect(result.stderr).toContain(`on channel ${channel} of ${valkeyUrl()} (1 subscribers)`)
    const { message, manifest } = await received
    expect(JSON.parse(message)).toEqual({ app, timestamp: 300, manifestKey: `manifest:${app}:300`, store: valkeyUrl() })
    expect(manifest).not.toBeNull()
  })

  it('--announce-channel with a store that has no channels is bad configuration: exit 2, nothing written', async () => {
    const { work, dist } = await workspaceWithBuild()
    const cache = join(work, 'cache')
    const result = await runCli(['populate', dist, '--app', 'my-app', '--store', cache, '--announce-channel', 'builds'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('Option `announce.channel` needs a store with channels (Valkey or Redis)')
    expect(await tree(cache)).toEqual([])
  })

  it('an older build is refused by vwatch (409): logged, not a warning, and the push succeeds', async () => {
    // On Valkey every build is complete in its own keys, so an older one pushed late still announces.
    const store = createValkeyStore(valkeyUrl(), {})
    const app = uniqueApp()
    const announce = { vwatch: vwatchEnv().write }
    await pushBuild(store, { app, timestamp: 200, announce })
    const { report, lines } = await pushBuild(store, { app, timestamp: 100, announce })
    await store.close()
    expect(report.announce).toEqual({ vwatch: 'conflict' })
    expect(lines.filter((line) => line.includes('warning'))).toEqual([])
    expect(lines).toContainEqual(expect.stringContaining('already holds version "200", newer than build 100'))
    expect(await vwatchStats(`push-cache/${app}`)).toMatchObject({ puts: 2, version: '200' })
  })

  it('an older build that a newer one supersedes in S3 or a directory (no entrypoint written) announces nothing', async () => {
    const store = await localStore()
    const app = uniqueApp()
    const announce = { vwatch: vwatchEnv().write }
    await pushBuild(store, { app, timestamp: 200, announce })
    const { report } = await pushBuild(store, { app, timestamp: 100, announce })
    expect(report).toMatchObject({ superseded: true, manifestKey: `manifests/${app}/100` })
    expect(report.announce).toBeUndefined()
    expect(await vwatchStats(`push-cache/${app}`)).toMatchObject({ puts: 1, version: '200' })
  })

  it('a vwatch that is down: the push succeeds with a warning, within the bound, its password never printed', async () => {
    const store = await localStore()
    const vwatch = `http://deployer:s3cret@127.0.0.1:${await closedPort()}`
    const started = performance.now()
    const { report, lines } = await pushBuild(store, { app: 'my-app', timestamp: 100, announce: { vwatch } })
    expect(performance.now() - started).toBeLessThan(3000)
    expect(report.announce?.vwatch).toMatch(/^failed: .*ECONNREFUSED/)
    expect(report.manifestKey).toBe('manifests/my-app/100')
    expect(lines).toContainEqual(
      expect.stringMatching(/warning: could not announce build 100 of my-app to vwatch http:\/\/127\.0\.0\.1:\d+\/v1\/versions\/push-cache\/my-app: /),
    )
    expect(JSON.stringify({ report, lines })).not.toContain('s3cret')
  })

  it('a vwatch that echoes the request in its error answer: the warning and the report never hold the credentials', async () => {
    // A proxy or a debugging server that answers 400 with the headers it got, Authorization included.
    const echo = createHttpServer((request, response) => response.writeHead(400).end(JSON.stringify(request.headers)))
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => void echo.close())
    const vwatch = `http://deployer:s3cret@127.0.0.1:${(echo.address() as AddressInfo).port}`
    const { report, lines } = await pushBuild(await localStore(), { app: 'my-app', timestamp: 100, announce: { vwatch } })
    expect(report.announce?.vwatch).toMatch(/^failed: HTTP 400 .*authorization/)
    const everything = JSON.stringify({ report, lines })
    expect(everything).not.toContain('s3cret')
    expect(everything).not.toContain(btoa('deployer:s3cret'))
  })

  it('a vwatch that accepts and never answers: three attempts of 2 s, then the push succeeds with a warning', async () => {
    const sockets: Socket[] = []
    const silent = createServer((socket) => void sockets.push(socket))
    await new Promise<void>((ready) => silent.listen(0, '127.0.0.1', ready))
    onTestFinished(() => {
      for (const socket of sockets) socket.destroy()
      silent.close()
    })
    const started = performance.now()
    const { report, lines } = await pushBuild(await localStore(), {
      app: 'my-app',
      timestamp: 100,
      announce: { vwatch: `http://127.0.0.1:${(silent.address() as { port: number }).port}` },
    })
    const elapsed = performance.now() - started
    expect(report.announce).toEqual({ vwatch: 'failed: no answer within 2 s' })
    expect(sockets).toHaveLength(3)
    expect(elapsed).toBeGreaterThanOrEqual(6000)
    expect(elapsed).toBeLessThan(8500)
    expect(lines).toContainEqual(expect.stringContaining('warning: could not announce build 100 of my-app'))
  })

  it('a failed push announces nothing', async () => {
    const root = await tempDir()
    await mkdir(join(root, 'data/my-app/index.html'), { recursive: true }) // a directory where a file must go
    const name = uniqueName()
    await expect(pushBuild(createLocalStore(root), { app: 'my-app', timestamp: 100, announce: { vwatch: vwatchEnv().write, name } })).rejects.toMatchObject({
      code: 'UPLOAD_FAILED',
    })
    expect(await vwatchStats(name)).toMatchObject({ puts: 0 })
  })

  it('100 long-pollers on one name are all woken by one announce, each with one request', async () => {
    const store = await localStore()
    const app = uniqueApp()
    const name = `push-cache/${app}`
    const announce = { vwatch: vwatchEnv().write }
    await pushBuild(store, { app, timestamp: 100, announce })

    /** A watcher as `push-cache watch` runs one: long-poll, and poll again only when the answer is the version it has. */
    const watch = async (held: string) => {
      for (let requests = 1; requests <= 5; requests++) {
        const seen = versionOf(await getVersion(name, { version: held, timeout: '30s' }))
        if (seen !== held) return { seen, requests, at: performance.now() }
      }
      throw new Error('no new version after 5 long-polls')
    }
    const watchers = Promise.all(Array.from({ length: 100 }, () => watch('100')))
    await waitForStats(name, (stats) => stats.waiting === 100)

    const announced = performance.now()
    await pushBuild(store, { app, timestamp: 200, announce })
    const woken = await watchers
    expect(woken.map(({ seen, requests }) => ({ seen, requests }))).toEqual(Array(100).fill({ seen: '200', requests: 1 }))
    expect(Math.max(...woken.map(({ at }) => at)) - announced).toBeLessThan(1000)
    expect(await vwatchStats(name)).toMatchObject({ gets: 100, waiting: 0 })
  })
})
