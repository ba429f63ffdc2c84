import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { readdir, readFile, readlink, realpath } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { MANIFEST_MAX_BYTES } from '../../src/core/model/manifest'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import { flatLayout, layoutOf } from '../../src/core/store/layout'
import type { Store } from '../../src/core/store/store'
import { resolveOptions } from '../../src/options'
import { buildOf, createWorld, popInto, pushBuild, type World, watchOnce } from '../harness/actors'
import { startHoldProxy } from '../harness/hold-proxy'
import { createGate, type Gate } from '../harness/holds'
import { destViolations } from '../harness/invariants'
import { broken, enumerateWindows, type Scenario } from '../harness/scheduler'
import { CLI, runCli } from '../helpers/cli'
import { tempDir, tree, writeTree } from '../helpers/fs'
import { s3StoreOptions } from '../helpers/s3'
import { STORE_KINDS } from '../helpers/stores'

/**
 * The reader side of issue 16, each case as a deterministic run of the harness: a pop or watch held
 * at each of its request types while a push runs, and the other way round; two writers of one
 * `dest`; a full disk at the state file; hostile store answers. Each asserts what a user would see
 * in the served directory.
 */

const worlds: World[] = []
afterEach(async () => {
  await Promise.all(worlds.splice(0).map((world) => world.close()))
})

/** `dest` serving build v1 of a fresh app on a `kind` store. */
async function worldServing(kind: (typeof STORE_KINDS)[number]): Promise<{ world: World; dest: string }> {
  const world = await createWorld(kind)
  worlds.push(world)
  await pushBuild(world, 'v1', 100)
  const dest = join(await tempDir(), 'www')
  await popInto(world, dest)
  return { world, dest }
}

/** `dest` serving v0 while the store's newest build is v1: a reader has a whole build to fetch. */
async function worldBehind(kind: (typeof STORE_KINDS)[number]): Promise<{ world: World; dest: string }> {
  const world = await createWorld(kind)
  worlds.push(world)
  await pushBuild(world, 'v0', 50)
  const dest = join(await tempDir(), 'www')
  await popInto(world, dest)
  await pushBuild(world, 'v1', 100)
  return { world, dest }
}

/** A reader of `dest` (`pop` or `watch --once`) catching up to v1 against a push of build v2. */
const readerAgainstPush = (
  kind: (typeof STORE_KINDS)[number],
  reader: (world: World, dest: string, gate: Gate) => Promise<unknown>,
): Scenario<{ world: World; dest: string }> => ({
  setup: () => worldBehind(kind),
  held: ({ world, dest }, gate) => reader(world, dest, gate),
  others: ({ world }) => pushBuild(world, 'v2', 200),
  check: async ({ world, dest }) => destViolations(dest, world.builds),
  teardown: async ({ world }) => world.close(),
})

describe.each(STORE_KINDS)('case 1 on the %s store: a reader racing a push never serves a broken page', (kind) => {
  it('pop held at each of its request types while build v2 is pushed: dest is v1 or v2, whole', async () => {
    const windows = await enumerateWindows(readerAgainstPush(kind, popInto), { phases: ['before', 'after'] })
    expect(windows.filter((window) => window.reached).length).toBeGreaterThanOrEqual(3)
    expect(broken(windows)).toEqual([])
  })

  it('watch --once held at each of its request types while build v2 is pushed: dest is v1 or v2, whole', async () => {
    const windows = await enumerateWindows(readerAgainstPush(kind, watchOnce), { phases: ['before', 'after'] })
    expect(windows.filter((window) => window.reached).length).toBeGreaterThanOrEqual(3)
    expect(broken(windows)).toEqual([])
  })

  it('pop failing at each of its request types while build v2 is pushed: it says so, and dest stays whole', async () => {
    const windows = await enumerateWindows(readerAgainstPush(kind, popInto), { fail: () => Object.assign(new Error('injected failure'), { transient: false }) })
    expect(windows.filter((window) => window.reached).length).toBeGreaterThanOrEqual(3)
    expect(windows.filter((window) => window.reached && window.outcome.ok)).toEqual([])
    expect(broken(windows)).toEqual([])
  })

  it('a push of v2 held at each of its request types while pop runs: dest is v1 or v2, whole', async () => {
    const windows = await enumerateWindows<{ world: World; dest: string }>({
      setup: () => worldServing(kind),
      held: ({ world }, gate) => pushBuild(world, 'v2', 200, gate),
      others: ({ world, dest }) => popInto(world, dest),
      check: async ({ world, dest }) => destViolations(dest, world.builds),
      teardown: async ({ world }) => world.close(),
    })
    expect(windows.filter((window) => window.reached).length).toBeGreaterThanOrEqual(3)
    expect(broken(windows)).toEqual([])
  })
})

describe('case 1 through the CLI: `watch --once` behind a request-holding proxy', () => {
  it('never exits 0 having served a broken page, held at each S3 request type while v2 is pushed', async () => {
    const proxy = await startHoldProxy(s3StoreOptions().endpoint!, 'unused')
    const windows = await enumerateWindows<{ world: World; dest: string }>({
      async setup() {
        const served = await worldBehind('s3')
        proxy.app = served.world.app
        return served
      },
      async held({ world, dest }, gate) {
        proxy.gate = gate
        const { code, stderr } = await runCli(['watch', dest, '--app', world.app, '--store', world.url, '--once', '--retries', '1'], {
          env: { ...world.env, AWS_ENDPOINT_URL_S3: proxy.endpoint },
        })
        if (code !== 0) throw Object.assign(new Error(stderr), { code: String(code) })
      },
      others: ({ world }) => pushBuild(world, 'v2', 200),
      check: async ({ world, dest }) => destViolations(dest, world.builds),
      teardown: async ({ world }) => world.close(),
    })
    expect(windows.filter((window) => window.reached).length).toBeGreaterThanOrEqual(3)
    expect(broken(windows)).toEqual([])
  })
})

describe('a CLI pop killed -9 at each of its S3 request types', () => {
  it('leaves dest whole, and the next pop serves the newest build', async () => {
    const proxy = await startHoldProxy(s3StoreOptions().endpoint!, 'unused')
    let killed = 0
    const windows = await enumerateWindows<{ world: World; dest: string; child?: ChildProcess }>({
      async setup() {
        const behind = await worldBehind('s3')
        proxy.app = behind.world.app
        return behind
      },
      async held(world, gate) {
        proxy.gate = gate
        const child = spawn(process.execPath, [CLI, 'pop', world.dest, '--app', world.world.app, '--store', world.world.url], {
          env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', ...world.world.env, AWS_ENDPOINT_URL_S3: proxy.endpoint },
          stdio: 'ignore',
        })
        world.child = child
        const code = await new Promise((resolve) => child.once('exit', (exitCode, signal) => resolve(signal ?? exitCode)))
        if (code !== 0) throw new Error(`pop ended with ${code}`)
      },
      async others(world) {
        world.child?.kill('SIGKILL')
        killed++
      },
      async check({ world, dest }) {
        const afterCrash = await destViolations(dest, world.builds)
        await popInto(world, dest)
        return [...afterCrash, ...(await destViolations(dest, world.builds))]
      },
      teardown: async ({ world }) => world.close(),
    })
    expect(killed).toBeGreaterThanOrEqual(4)
    expect(windows.filter((window) => window.reached && window.outcome.ok)).toEqual([])
    expect(broken(windows)).toEqual([])
  })
})

describe('case 8: two writers of one dest', () => {
  it('a reader that resolved dest between two pops finds every file of what it resolved', async () => {
    const { world, dest } = await worldServing('local')
    await pushBuild(world, 'v2', 200)
    const gate = createGate()
    const held = gate.hold('read:entrypoint')
    const second = popInto(world, dest, gate)
    await held.reached
    // The first writer runs while the second is held; with one writer at a time it waits instead.
    const first = popInto(world, dest)
    await Promise.race([first, sleep(2000)])
    const resolved = await realpath(dest)
    const files = await tree(resolved)
    gate.releaseAll()
    await Promise.all([second, first])
    const missing: string[] = []
    for (const relpath of files) await readFile(join(resolved, relpath)).catch(() => missing.push(relpath))
    expect(missing).toEqual([])
    expect(await destViolations(dest, world.builds)).toEqual([])
    expect(await readdir(join(dirname(dest), '.www.builds'))).not.toContain('.lock')
  })

  it('a second writer waits for the first, then finds dest up to date', async () => {
    const { world, dest } = await worldServing('s3')
    await pushBuild(world, 'v2', 200)
    const [one, two] = await Promise.all([popInto(world, dest), popInto(world, dest)])
    // v2's 8 files; v1's chunks, which the flat store still holds, are hard-linked from what dest served.
    expect([one.downloaded.files, two.downloaded.files].sort((a, b) => a - b)).toEqual([0, 8])
    expect(two.build).toBe(one.build)
  })
  it('a pop killed -9 while it holds the lock: the next pop takes the lock over and serves v1 whole', async () => {
    const { world, dest } = await worldBehind('s3')
    const proxy = await startHoldProxy(s3StoreOptions().endpoint!, world.app)
    const held = proxy.gate.hold('read:entrypoint')
    const child = spawn(process.execPath, [CLI, 'pop', dest, '--app', world.app, '--store', world.url], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', ...world.env, AWS_ENDPOINT_URL_S3: proxy.endpoint },
      stdio: 'ignore',
    })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    await held.reached
    child.kill('SIGKILL')
    await exited
    proxy.gate.releaseAll()
    expect(await readdir(join(dirname(dest), '.www.builds'))).toContain('.lock')
    const started = Date.now()
    expect(await popInto(world, dest)).toMatchObject({ timestamp: 100 })
    expect(Date.now() - started).toBeLessThan(5000)
    expect(await destViolations(dest, world.builds)).toEqual([])
    expect(JSON.parse(await readFile(join(dest, 'fed-mods.json'), 'utf8')).version).toBe('v1')
  })
})

describe('case 9: a full disk at the state file', () => {
  it('pop exits 1, dest still serves the build it served, and no temporary file is left', async () => {
    const { world, dest } = await worldServing('local')
    await pushBuild(world, 'v2', 200)
    const before = await readlink(dest)
    // RLIMIT_FSIZE of one 512-byte block: every file of the build fits, the state file (~1 KB) does not.
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((done) =>
      execFile(
        'bash',
        ['-c', 'ulimit -f 1; exec "$0" "$@"', process.execPath, CLI, 'pop', dest, '--app', world.app, '--store', world.url],
        { env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true' }, timeout: 60_000 },
        (error, _stdout, stderr) => done({ code: error ? Number(error.code) : 0, stderr }),
      ),
    )
    expect(stderr).toMatch(/EFBIG/)
    expect(code).toBe(1)
    expect(await readlink(dest)).toBe(before)
    expect((await readdir(join(dirname(dest), '.www.builds'))).filter((name) => name.startsWith('.'))).toEqual([])
    expect(await destViolations(dest, world.builds)).toEqual([])
  })
})

/** `store` with the body of each read passed through `tamper` (a flipped byte, a longer body). */
function tampered(store: Store, tamper: (key: string, body: Readable) => Readable): Store {
  return { ...store, read: async (key) => ((body) => body && tamper(key, body))(await store.read(key)) }
}

async function* padded(body: Readable, padding: number, pulled: { bytes: number }) {
  for await (const chunk of body) yield chunk
  for (let sent = 0; sent < padding; sent += 65_536) {
    pulled.bytes += 65_536
    yield Buffer.alloc(65_536, 32)
  }
}

async function* flipped(body: Readable) {
  let first = true
  for await (const chunk of body as AsyncIterable<Buffer>) {
    const copy = Buffer.from(chunk)
    if (first) copy[0]! ^= 1
    first = false
    yield copy
  }
}

describe.each(STORE_KINDS)('case 11 and issue 17 item 3 on the %s store: reads are bounded and checked', (kind) => {
  const chunkKey = (world: World, relpath: string) => layoutOf({ layout: world.kind === 'valkey' ? 'versioned' : 'flat' }).dataKey(world.app, 200, relpath)

  it('a body longer than the file its build recorded is cut there and refused; dest keeps serving v1', async () => {
    const { world, dest } = await worldServing(kind)
    await pushBuild(world, 'v2', 200)
    const key = chunkKey(world, 'js/chunk-0.v2.js')
    const pulled = { bytes: 0 }
    const store = tampered(await world.open(), (read, body) => (read === key ? Readable.from(padded(body, 20 * 1024 * 1024, pulled)) : body))
    await expect(pop({ store, app: world.app, dest, retries: 0 })).rejects.toMatchObject({
      code: 'DOWNLOAD_FAILED',
      message: expect.stringContaining(key),
    })
    expect(pulled.bytes).toBeLessThan(1024 * 1024)
    expect(await destViolations(dest, world.builds)).toEqual([])
    expect(JSON.parse(await readFile(join(dest, 'fed-mods.json'), 'utf8')).version).toBe('v1')
  })

  it('a flipped byte is read again; flipped twice, the pop fails naming the key and dest keeps serving v1', async () => {
    const { world, dest } = await worldServing(kind)
    await pushBuild(world, 'v2', 200)
    const key = chunkKey(world, 'js/chunk-1.v2.js')
    let reads = 0
    const once = tampered(await world.open(), (read, body) => (read === key && ++reads === 1 ? Readable.from(flipped(body)) : body))
    await pop({ store: once, app: world.app, dest })
    expect(reads).toBe(2)
    expect(await destViolations(dest, world.builds)).toEqual([])
    expect(await readFile(join(dest, 'js/chunk-1.v2.js'), 'utf8')).toBe(buildOf('v2')['js/chunk-1.v2.js'])

    await pushBuild(world, 'v3', 300)
    const v3Key = layoutOf({ layout: world.kind === 'valkey' ? 'versioned' : 'flat' }).dataKey(world.app, 300, 'js/chunk-1.v3.js')
    const always = tampered(await world.open(), (read, body) => (read === v3Key ? Readable.from(flipped(body)) : body))
    await expect(pop({ store: always, app: world.app, dest })).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringContaining(v3Key) })
    expect(JSON.parse(await readFile(join(dest, 'fed-mods.json'), 'utf8')).version).toBe('v2')
    expect(await destViolations(dest, world.builds)).toEqual([])
  })

  it('a manifest listed above 128 MiB is refused without a byte of it read', async () => {
    const world = await createWorld(kind)
    worlds.push(world)
    await pushBuild(world, 'v1', 100)
    const huge = `{"files":[],"pad":"${' '.repeat(MANIFEST_MAX_BYTES)}"}`
    const planter = await world.open()
    await planter.put(layoutOf(planter).manifestKey(world.app, 200), Buffer.from(huge))
    const reads: string[] = []
    const store = await world.open()
    const recording: Store = {
      ...store,
      read: (key) => {
        reads.push(key)
        return store.read(key)
      },
    }
    await pop({ store: recording, app: world.app, dest: join(await tempDir(), 'www') }).catch(() => {})
    expect(reads).not.toContain(layoutOf(planter).manifestKey(world.app, 200))
  })
})

describe('case 11: a listing that never ends', () => {
  it('pop stops at 1,000,000 entries and says the listing cannot be used', async () => {
    const { world, dest } = await worldServing('local')
    const store = await world.open()
    const endless: Store = {
      ...store,
      async *list(prefix) {
        yield* store.list(prefix)
        // Three million is enough to tell a bound from none, and ends on its own if there is none.
        if (prefix === flatLayout.dataPrefix(world.app)) for (let i = 0; i < 3_000_000; i++) yield { key: `${prefix}more/${i}.js`, size: 1 }
      },
    }
    const started = Date.now()
    await expect(pop({ store: endless, app: world.app, dest })).rejects.toMatchObject({
      code: 'STORE_UNREACHABLE',
      message: expect.stringMatching(/listed more than 1,000,000 keys .* still going/),
    })
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(await destViolations(dest, world.builds)).toEqual([])
  })
})

describe('issue 19 item 5: no Node warning in normal use', () => {
  it('a pop of 30 files with a signal emits no MaxListenersExceededWarning', async () => {
    const world = await createWorld('local')
    worlds.push(world)
    const files: Record<string, string> = {}
    for (let i = 0; i < 30; i++) files[`js/f${i}.js`] = `f${i}`
    await populate({
      store: await world.open(),
      options: resolveOptions({ app: world.app, timestamp: 100 }, {}),
      files: await collectFiles(await writeTree(await tempDir(), files)),
    })
    const warnings: string[] = []
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
    process.on('warning', onWarning)
    try {
      await pop({ store: await world.open(), app: world.app, dest: join(await tempDir(), 'www'), signal: new AbortController().signal })
      await sleep(50) // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning)
    }
    expect(warnings).toEqual([])
  })
})
