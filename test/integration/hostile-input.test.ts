// Broken and hostile input against every real store: file names that trip URL encoders, big and
// deep builds, manifests and keys planted by someone else. Nothing is lost, nothing escapes.
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { MANIFEST_MAX_BYTES } from '../../src/core/model/manifest'
import { prune } from '../../src/core/prune/prune'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import { listBuilds } from '../../src/core/store/builds'
import { layoutOf } from '../../src/core/store/layout'
import type { Store } from '../../src/core/store/store'
import { resolveOptions } from '../../src/options'
import { parseReport, runCli } from '../helpers/cli'
import { tempDir, tree, writeTree } from '../helpers/fs'
import { STORE_KINDS, type StoreKind, type StoreUnderTest, storeUnderTest } from '../helpers/stores'
import { uniqueApp } from '../helpers/valkey'

const NOW = Math.floor(Date.now() / 1000)
const DAY = 86_400

/** Every byte of every file below `root`, by relpath. */
async function readBytes(root: string): Promise<Record<string, Buffer>> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true })
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1))
  return Object.fromEntries(await Promise.all(files.map(async (relpath) => [relpath, await readFile(join(root, relpath))])))
}

/** Names that URL encoders, glob matchers and Unicode normalizers get wrong, and bytes that are not text. */
const TRAPS: Record<string, string | Buffer> = {
  'fed-mods.json': '{"app":{"entry":["/apps/app/js/main.js"]}}',
  'ünïcødé/文件 名.js': 'unicode',
  'with space.js': 'space',
  '100%.js': 'percent',
  '%41%2F.js': 'a decoder would read A/',
  'a#b.js': 'hash',
  'what?x=1&y=2.js': 'query',
  'c++.js': 'plus',
  'a+b c.css': 'plus and space',
  'caf\u00e9.js': 'NFC é',
  'cafe\u0301.js': 'NFD é',
  'emoji 🚀.txt': 'emoji',
  'quote\'"semi;comma,eq=.js': 'punctuation',
  'star*[glob]?.js': 'glob characters',
  'colon:name.js': 'colon',
  'tilde~!$@().js': 'more punctuation',
  'empty.bin': Buffer.alloc(0),
  'binary.bin': randomBytes(4096),
  [`${'d/'.repeat(200)}deep.js`]: '200 directories deep',
}

/**
 * moto answers 50 to 100 requests a second on a loaded 2-core machine: 10,000 files would take
 * minutes there. The S3 store contract lists and deletes past one page (1,000 keys).
 */
const MANY: Record<StoreKind, number> = { local: 10_000, valkey: 10_000, s3: 500 }

/** Manifests another tool (or an attacker) could leave; each would mislead a prune that trusted it. */
const BAD_MANIFESTS: [name: string, timestamp: number, body: () => string, reason: string][] = [
  ['bad JSON', NOW - 25 * DAY, () => '{"files": [', 'it is not JSON'],
  ['of the wrong types', NOW - 25 * DAY, () => '{"files":"fed-mods.json","timestamp":"yesterday"}', '`files` is not a list of paths'],
  ['whose files are not strings', NOW - 25 * DAY, () => '{"files":[1,{"path":"a.js"}]}', '`files` is not a list of paths'],
  ['naming a file of another app', NOW - 25 * DAY, () => '["fed-mods.json","../other-app/fed-mods.json"]', 'whose path has an empty, `.` or `..` segment'],
  ['dated in the year 3000', 32_503_680_000, () => '{"files":["fed-mods.json"],"timestamp":32503680000}', 'it is dated 3000-01-01'],
  ['foreign: its timestamp is not its key', NOW - 25 * DAY, () => `{"files":["fed-mods.json"],"timestamp":${NOW - 400 * DAY}}`, 'is not the'],
  ['of 10 MB of nested arrays', NOW - 25 * DAY, () => `${'['.repeat(5 * 1024 * 1024)}${']'.repeat(5 * 1024 * 1024)}`, 'nests more than 64 levels'],
  ['of 10 MB of numbers', NOW - 25 * DAY, () => JSON.stringify({ files: Array.from({ length: 1_300_000 }, (_, i) => i) }), '`files` is not a list of paths'],
  ['of 129 MiB', NOW - 25 * DAY, () => JSON.stringify({ files: ['fed-mods.json'], padding: 'x'.repeat(MANIFEST_MAX_BYTES) }), 'more than the 128.0 MiB'],
]

/** Relpaths a data key could carry to make pop write outside its destination or confuse a server. */
const UNSAFE_RELPATHS: [relpath: string, holdsIt: readonly StoreKind[]][] = [
  ['../../evil.sh', ['s3', 'valkey']],
  ['/etc/cron.d/evil', ['s3', 'valkey']],
  ['..\\..\\evil.bat', ['local', 's3', 'valkey']],
  // moto answers a key with a newline with an HTML error page, so S3 is tried with an escape only.
  ['forged\nlog line.js', ['local', 'valkey']],
  ['\u001b[2Jclear.js', ['local', 's3', 'valkey']],
  ['nul\0byte.js', ['valkey']],
]

describe.each(STORE_KINDS)('the %s store', (kind) => {
  let target: StoreUnderTest
  let store: Store
  let app: string
  beforeEach(async () => {
    target = await storeUnderTest(kind)
    store = await target.open()
    app = uniqueApp()
  })
  afterEach(async () => {
    await store.close()
    await target.close()
  })

  const push = async (dir: string, timestamp = NOW) =>
    populate({ store, options: resolveOptions({ app, store: target.url, s3: target.s3, timestamp, concurrency: 32 }, {}), files: await collectFiles(dir) })
  const popped = async () => {
    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest, concurrency: 32 })
    return dest
  }

  it('round-trips names that trip URL encoders, an empty file, binary bytes and a 200-level deep path, byte for byte', async () => {
    const source = await writeTree(await tempDir(), TRAPS)
    expect(await push(source)).toMatchObject({ uploaded: Object.keys(TRAPS).length })
    const back = await readBytes(await popped())
    expect(Object.keys(back).sort()).toEqual(Object.keys(TRAPS).sort())
    for (const [relpath, content] of Object.entries(TRAPS)) expect(back[relpath], relpath).toEqual(Buffer.from(content))
  })

  it(`round-trips ${MANY[kind].toLocaleString('en')} files`, async () => {
    const count = MANY[kind]
    const source = await tempDir()
    for (let dir = 0; dir < count / 100; dir++) {
      await mkdir(join(source, `d${dir}`))
      await Promise.all(Array.from({ length: 100 }, (_, file) => writeFile(join(source, `d${dir}`, `${file}.js`), `${dir}/${file}`)))
    }
    let started = Date.now()
    expect(await push(source)).toMatchObject({ uploaded: count })
    const pushMs = Date.now() - started
    started = Date.now()
    const dest = await popped()
    const popMs = Date.now() - started
    const back = await readBytes(dest)
    expect(Object.keys(back)).toHaveLength(count)
    for (const [relpath, content] of Object.entries(back)) expect(content.toString(), relpath).toBe(relpath.slice(1, -'.js'.length))
    console.info(`${kind}: ${count} files pushed in ${pushMs} ms, popped in ${popMs} ms`)
  })

  it('populate refuses an empty build before it touches the store (exit 2)', async () => {
    const empty = await tempDir()
    const result = await runCli(['populate', empty, '--app', app, '--store', target.url, '--json'], { env: target.env })
    expect(result.code).toBe(2)
    expect(parseReport(result.stdout)).toMatchObject({
      errors: [{ code: 'NO_FILES', message: expect.stringContaining(`The directory ${empty} holds no files`) }],
    })
    expect(await target.keys(app)).toEqual([])
  })

  it('populate pushes a build without its entrypoint (documented), and pop serves it', async () => {
    const dist = await writeTree(await tempDir(), { 'index.html': '<!doctype html>', 'js/main.js': 'main' })
    const pushed = await runCli(['populate', dist, '--app', app, '--store', target.url, '--json'], { env: target.env })
    expect(pushed.code, pushed.stderr).toBe(0)
    expect(parseReport(pushed.stdout)).toMatchObject({ ok: true, uploaded: 2, entrypoints: [] })
    const dest = join(await tempDir(), 'www')
    const popped = await runCli(['pop', dest, '--app', app, '--store', target.url], { env: target.env })
    expect(popped.code, popped.stderr).toBe(0)
    expect(await tree(dest)).toEqual(['index.html', 'js/main.js'])
  })

  it.each(BAD_MANIFESTS)('a planted manifest %s is reported by ls, prune and pop, and nothing is deleted', async (_, timestamp, body, reason) => {
    await push(await writeTree(await tempDir(), { 'fed-mods.json': 'a', 'a.js': 'a' }), NOW - 30 * DAY)
    await push(await writeTree(await tempDir(), { 'fed-mods.json': 'b', 'b.js': 'b' }), NOW - 20 * DAY)
    const planted = layoutOf(store).manifestKey(app, timestamp)
    await target.plant(planted, body())
    const before = await target.keys(app)

    await expect(listBuilds(store, app)).rejects.toMatchObject({ code: 'MANIFEST_UNREADABLE', message: expect.stringContaining(planted) })
    // Trusted, each of them would let this prune delete a.js or b.js, or another app's files.
    const report = await prune({ store, app, rule: { now: NOW, olderThanSeconds: DAY, keep: 1 }, entrypoints: ['fed-mods.json'] })
    expect(report).toMatchObject({ builds: [], keys: [], aborted: expect.stringContaining(reason) })
    expect(report.aborted).toContain(`Manifest ${planted} cannot be read`)
    expect(await target.keys(app)).toEqual(before)

    // S3 and local pop serve the data keys (with no readable newest manifest to vouch for what dest
    // holds, they download everything); Valkey pop picks versions by manifest.
    if (store.layout === 'flat') expect(await tree(await popped())).toEqual(['a.js', 'b.js', 'fed-mods.json'])
    else {
      const dest = join(await tempDir(), 'www')
      await expect(pop({ store, app, dest })).rejects.toMatchObject({ code: 'MANIFEST_UNREADABLE', message: expect.stringContaining(planted) })
      expect(await tree(dirname(dest))).toEqual([])
    }
  })

  const unsafe = UNSAFE_RELPATHS.filter(([, holdsIt]) => holdsIt.includes(kind)).map(([relpath]) => relpath)
  it.each(unsafe)('pop refuses a planted key whose path is %j, names it, and writes nothing', async (relpath) => {
    // Valkey: data keys only, as valpop writes them, so pop finds the build by scanning them.
    await target.plant(layoutOf(store).dataKey(app, 100, 'fed-mods.json'), '{}')
    const key = layoutOf(store).dataKey(app, 100, relpath)
    await target.plant(key, 'echo pwned')
    const work = await tempDir()
    await expect(pop({ store, app, dest: join(work, 'www') })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
      message: expect.stringContaining(`Refusing key ${JSON.stringify(key)}`),
    })
    expect(await tree(work)).toEqual([])
  })
})
