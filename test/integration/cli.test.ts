import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { beforeEach, describe, expect, it } from 'vitest'
import { BUILD, CLI, closedPort, parseReport, readText, runCli, tree, workspaceWithBuild, writeTree } from '../helpers/cli'

const NOW = Math.floor(Date.now() / 1000)
const DAY = 86400

let work: string
let dist: string
let store: string
beforeEach(async () => {
  ;({ work, dist } = await workspaceWithBuild())
  store = join(work, 'store')
})

const populate = (...extra: string[]) => runCli(['populate', dist, '--app', 'my-app', '--store', store, ...extra])

describe('push-cache with a local directory store', () => {
  it('prints the version of package.json and a help for every command', async () => {
    const { version } = JSON.parse(await readFile('package.json', 'utf8')) as { version: string }
    const result = await runCli(['--version'])
    expect(result).toMatchObject({ code: 0, stderr: '' })
    expect(result.stdout).toContain(`push-cache/${version}`)
    for (const [command, flag] of [
      ['populate', '--prune-older-than'],
      ['pop', '--entrypoint'],
      ['prune', '--older-than'],
      ['ls', '--json'],
      ['watch', 'Print one JSON line on stdout per event'],
    ]) {
      const help = await runCli([command!, '--help'])
      expect(help.code).toBe(0)
      expect(help.stdout).toContain(`$ push-cache ${command}`)
      expect(help.stdout).toContain(flag)
    }
  })

  it('populates, lists, pops; --json prints one report on stdout and logs go to stderr', async () => {
    const pushed = await populate('--timestamp', String(NOW - 60), '--image', 'quay.io/org/my-app:abc', '--json')
    expect(pushed.code, pushed.stderr).toBe(0)
    const report = parseReport(pushed.stdout)
    expect(report).toMatchObject({
      ok: true,
      command: 'populate',
      app: 'my-app',
      uploaded: 4,
      bytes: Object.values(BUILD).join('').length,
      entrypoints: ['fed-mods.json'],
      errors: [],
    })
    expect(pushed.stderr).toContain('pushed 4 files')
    expect(await tree(store)).toEqual([...Object.keys(BUILD).map((relpath) => `data/my-app/${relpath}`), `manifests/my-app/${NOW - 60}`].sort())

    const listed = await runCli(['ls', '--app', 'my-app', '--store', store])
    expect(listed.code).toBe(0)
    const [header, row] = listed.stdout.trim().split('\n')
    expect(header).toMatch(/^TIMESTAMP\s+DATE\s+AGE\s+FILES\s+BYTES\s+IMAGE$/)
    expect(row).toMatch(new RegExp(`^${NOW - 60}\\s+\\S+Z\\s+1m\\s+4\\s+\\d+ B\\s+quay.io/org/my-app:abc$`))
    const json = parseReport((await runCli(['ls', '--app', 'my-app', '--store', store, '--json'])).stdout)
    expect(json.builds).toEqual([
      expect.objectContaining({ timestamp: NOW - 60, files: 4, bytes: report.bytes, image: 'quay.io/org/my-app:abc', complete: true }),
    ])

    const dest = join(work, 'www', 'my-app')
    const popped = await runCli(['pop', dest, '--app', 'my-app', '--store', store, '--json'])
    expect(popped.code, popped.stderr).toBe(0)
    expect(parseReport(popped.stdout)).toMatchObject({ ok: true, command: 'pop', files: 4, bytes: report.bytes })
    for (const [relpath, content] of Object.entries(BUILD)) expect(await readText(join(dest, relpath))).toBe(content)
  })

  it('takes the app and the store from env, and a flag wins over env', async () => {
    const env = { PUSH_CACHE_APP: 'from-env', PUSH_CACHE_STORE: store }
    expect((await runCli(['populate', dist], { env })).code).toBe(0)
    expect((await runCli(['populate', dist, '--app', 'from-flag'], { env })).code).toBe(0)
    expect((await tree(join(store, 'manifests'))).map((path) => path.split('/')[0])).toEqual(['from-env', 'from-flag'])
  })

  it('skips the run when the newest build already records the same --image', async () => {
    expect((await populate('--timestamp', '1000', '--image', 'img:1')).code).toBe(0)
    const again = await populate('--timestamp', '2000', '--image', 'img:1', '--json')
    expect(again.code).toBe(0)
    expect(parseReport(again.stdout)).toMatchObject({ skipped: 'same-image', uploaded: 0 })
    expect(again.stderr).toContain('already records image img:1')
    expect(await tree(join(store, 'manifests/my-app'))).toEqual(['1000'])
    expect((await populate('--timestamp', '3000', '--image', 'img:2')).code).toBe(0)
    expect(await tree(join(store, 'manifests/my-app'))).toEqual(['1000', '3000'])
  })

  it('--dry-run writes nothing', async () => {
    const result = await populate('--dry-run', '--json')
    expect(result.code).toBe(0)
    expect(parseReport(result.stdout)).toMatchObject({ dryRun: true, uploaded: 4 })
    expect(result.stderr).toContain('would push data/my-app/fed-mods.json')
    expect(await tree(store)).toEqual([])
  })

  it('--dry-run ends with what it would write, and what a prune would delete, even when nothing changed', async () => {
    for (const age of [5, 4, 3]) expect((await populate('--timestamp', String(NOW - age * DAY))).code).toBe(0)
    const unchanged = await populate('--dry-run', '--timestamp', String(NOW), '--prune-older-than', '2d', '--keep', '2', '--json')
    expect(unchanged.code, unchanged.stderr).toBe(0)
    expect(unchanged.stderr).toMatch(
      /dry run: would push 0 files \(0 B: 0 new, 0 changed\) of my-app to .*, 4 unchanged \(\d+ B\) skipped; fed-mods\.json last, then the manifest manifests\/my-app\/\d+; a prune would delete 2 builds \(\d+ files\)\. Nothing was written\./,
    )
    expect(parseReport(unchanged.stdout)).toMatchObject({ dryRun: true, uploaded: 0, pruned: { dryRun: true, builds: [NOW - 4 * DAY, NOW - 5 * DAY] } })

    await writeTree(dist, { 'js/new.9f8e7d6c.js': 'new', 'img/logo.svg': '<svg>changed</svg>' })
    const changed = await populate('--dry-run', '--timestamp', String(NOW))
    expect(changed.stderr).toMatch(/dry run: would push 2 files \(\d+ B: 1 new, 1 changed\)/)
    expect(await tree(join(store, 'manifests', 'my-app'))).toHaveLength(3)
  })

  it('takes repeated --include, --exclude and --entrypoint', async () => {
    const result = await populate(
      '--include',
      '*.json',
      '--include',
      'js/**',
      '--exclude',
      '**/*.map',
      '--entrypoint',
      'fed-mods.json',
      '--entrypoint',
      'index.html',
      '--json',
    )
    expect(parseReport(result.stdout)).toMatchObject({ uploaded: 2, excluded: 2, entrypoints: ['fed-mods.json'] })
    expect(await tree(join(store, 'data'))).toEqual(['my-app/fed-mods.json', 'my-app/js/main.1a2b3c4d.js'])
  })

  it('keeps the text of string flags that look like numbers: --app 007, --image 1.10, --entrypoint 010', async () => {
    await writeTree(dist, { '010': 'an entrypoint without an extension' })
    const result = await runCli([
      'populate',
      dist,
      '--app',
      '007',
      '--store',
      store,
      '--image',
      '1.10',
      '--entrypoint=010',
      '--timestamp',
      '0001700000000',
      '--json',
    ])
    expect(result.code, result.stderr).toBe(0)
    expect(parseReport(result.stdout)).toMatchObject({ app: '007', timestamp: 1700000000, entrypoints: ['010'] })
    expect(await tree(join(store, 'data'))).toContain('007/010')
    const manifest = JSON.parse(await readText(join(store, 'manifests/007/1700000000')))
    expect(manifest).toMatchObject({ image: '1.10', entrypoints: ['010'] })
    const listed = parseReport((await runCli(['ls', '--app', '007', '--store', store, '--json'])).stdout)
    expect(listed).toMatchObject({ app: '007', builds: [expect.objectContaining({ image: '1.10' })] })
  })

  it.each([
    ['--timestamp', '1e9'],
    ['--timestamp', '0x10'],
    ['--timestamp', '99999999999999999999'],
    ['--concurrency', '1.0'],
    ['--keep', '+3'],
  ])('refuses %s %s: a number flag takes the digits of a whole number', async (flag, value) => {
    const extra = flag === '--keep' ? ['--prune-older-than', '1d'] : []
    const result = await populate(flag, value, ...extra, '--json')
    expect(result.code).toBe(2)
    expect(parseReport(result.stdout)).toMatchObject({
      errors: [{ code: 'INVALID_OPTION', message: expect.stringContaining(`Option \`${flag}\` is "${value}"`) }],
    })
    expect(await tree(store)).toEqual([])
  })

  it('prunes old builds but the newest --keep, with --dry-run first; populate --prune-older-than does it after a push', async () => {
    for (const age of [30, 20, 10]) {
      await writeTree(dist, { [`js/build-${age}.js`]: String(age) })
      expect((await populate('--timestamp', String(NOW - age * DAY))).code).toBe(0)
    }
    const manifests = () => tree(join(store, 'manifests/my-app'))
    const dry = await runCli(['prune', '--app', 'my-app', '--store', store, '--older-than', '7d', '--keep', '1', '--dry-run', '--json'])
    expect(dry.code, dry.stderr).toBe(0)
    expect(parseReport(dry.stdout)).toMatchObject({ ok: true, dryRun: true, builds: [NOW - 20 * DAY, NOW - 30 * DAY], kept: 1 })
    expect(await manifests()).toHaveLength(3)

    const pruned = await runCli(['prune', '--app', 'my-app', '--store', store, '--older-than', '25d', '--keep', '1'])
    expect(pruned.code, pruned.stderr).toBe(0)
    expect(pruned.stderr).toContain('pruned 1 builds')
    expect(await manifests()).toEqual([String(NOW - 20 * DAY), String(NOW - 10 * DAY)])

    const pushed = await populate('--prune-older-than', '1d', '--keep', '1', '--json')
    expect(parseReport(pushed.stdout)).toMatchObject({ pruned: { builds: [NOW - 10 * DAY, NOW - 20 * DAY], kept: 1 } })
    expect(await manifests()).toHaveLength(1)
  })

  it('prunes by the documented defaults without --older-than and --keep: older than 48h, the newest 3 survive', async () => {
    for (const age of [5, 4, 3, 2]) expect((await populate('--timestamp', String(NOW - age * DAY))).code).toBe(0)
    expect((await populate('--timestamp', String(NOW - 3600))).code).toBe(0)
    const pruned = await runCli(['prune', '--app', 'my-app', '--store', store, '--json'])
    expect(pruned.code, pruned.stderr).toBe(0)
    expect(parseReport(pruned.stdout)).toMatchObject({ ok: true, builds: [NOW - 4 * DAY, NOW - 5 * DAY], kept: 3 })
  })

  it('fails a prune (exit 1) that finds a manifest it cannot read, naming it, and deletes nothing', async () => {
    for (const age of [30, 20]) expect((await populate('--timestamp', String(NOW - age * DAY))).code).toBe(0)
    await writeTree(join(store, 'manifests/my-app'), { [String(NOW - 10 * DAY)]: '{"files": "not a list"' })
    const before = await tree(store)
    const pruned = await runCli(['prune', '--app', 'my-app', '--store', store, '--older-than', '1d'])
    expect(pruned.code).toBe(1)
    expect(pruned.stderr.match(new RegExp(`Manifest manifests/my-app/${NOW - 10 * DAY} cannot be read`, 'g'))).toHaveLength(1)
    expect(pruned.stderr).toContain('Nothing was pruned; fix or delete that key.')
    expect(await tree(store)).toEqual(before)
  })

  it('warns when the entrypoint is missing, naming where a fed-mods.json was found', async () => {
    await rm(join(dist, 'fed-mods.json'))
    await writeTree(dist, { 'federation/fed-mods.json': '{}' })
    const result = await populate()
    expect(result.code, result.stderr).toBe(0)
    expect(result.stderr).toMatch(/warning: fed-mods\.json, an entrypoint, is not in the build.*Found federation\/fed-mods\.json/)
  })

  it('logs plain lines without a TTY and draws no bar', async () => {
    const result = await populate()
    expect(result.stderr).toMatch(/^\[push-cache\] 4\/4 files, \d+ B\/\d+ B, .+\/s$/m)
    expect(result.stderr).not.toContain('ETA')
  })

  it('logs the progress of a pop too', async () => {
    await populate()
    const result = await runCli(['pop', join(work, 'www'), '--app', 'my-app', '--store', store])
    expect(result.code, result.stderr).toBe(0)
    expect(result.stderr).toMatch(/^\[push-cache\] 4\/4 files, (\d+) B\/\1 B, .+\/s$/m)
  })

  /** What a pseudo-terminal of 80 columns shows (util-linux `script`; it runs the command through a shell, hence the quotes). */
  async function onTerminal(args: string[]): Promise<string> {
    const command = `stty cols 80; ${['node', CLI, ...args].map((word) => `'${word}'`).join(' ')}`
    return (await promisify(execFile)('script', ['-qec', command, '/dev/null'], { env: { PATH: process.env.PATH } })).stdout
  }

  it.skipIf(process.platform !== 'linux')('draws a progress bar with files, bytes, rate and ETA on a terminal, within 80 columns', async () => {
    const screen = await onTerminal(['populate', dist, '--app', 'my-app', '--store', store])
    expect(screen).toMatch(/\d+% 4\/4 files \d+ B\/\d+ B .+\/s ETA/)
    // Each drawing of the bar: from the start of the line (ESC[1G) to the erase of its rest (ESC[0K).
    const drawings = screen
      .split('\x1b[1G')
      .slice(1)
      .map((drawn) => drawn.split('\x1b[0K')[0]!)
    expect(drawings.length).toBeGreaterThan(0)
    for (const drawn of drawings) expect([...drawn].length).toBeLessThanOrEqual(80)
  })

  it.skipIf(process.platform !== 'linux').each([
    ['populate', () => ['populate', dist], /\[push-cache\] pushed 4 files/],
    ['pop', () => ['pop', join(work, 'www')], /\[push-cache\] popped 4 files/],
  ] as const)('on a terminal, the %s summary stays on its own line below the finished bar', async (_, args, summary) => {
    if (args()[0] === 'pop') await populate()
    const screen = await onTerminal([...args(), '--app', 'my-app', '--store', store])
    const at = screen.search(summary)
    expect(at).toBeGreaterThan(0)
    expect(screen[at - 1]).toBe('\n')
    expect(screen.slice(at)).not.toContain('\x1b[1G') // nothing drawn over it afterwards
  })
})

describe('bad usage and configuration: exit 2, a message that says what and how to fix, nothing written', () => {
  const cases: [name: string, args: () => Promise<string[]>, message: RegExp][] = [
    [
      'an unknown store scheme',
      async () => ['populate', dist, '--app', 'my-app', '--store', 'ftp://host/x'],
      /Option `store` has the unknown scheme "ftp:".*Use s3:\/\/bucket/,
    ],
    ['a missing app', async () => ['populate', dist, '--store', store], /Option `app` is missing.*--app inventory.*PUSH_CACHE_APP/],
    ['an app with /', async () => ['populate', dist, '--app', 'team/app', '--store', store], /Option `app` is "team\/app".*no `\/`/],
    ['an app with ..', async () => ['populate', dist, '--app', 'my..app', '--store', store], /Option `app` is "my\.\.app".*`\.\.`/],
    [
      'a directory that does not exist',
      async () => ['populate', join(work, 'nope'), '--app', 'my-app', '--store', store],
      /nope does not exist or is not a directory/,
    ],
    [
      'an empty directory',
      async () => ['populate', await mkdtemp(join(work, 'empty-')), '--app', 'my-app', '--store', store],
      /empty-\w+ holds no files.*Build first/,
    ],
    [
      'an unreachable store',
      async () => ['populate', dist, '--app', 'my-app', '--store', `valkey://127.0.0.1:${await closedPort()}`],
      /Cannot connect to valkey:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED.*Check the host, the port/,
    ],
    [
      'a malformed --prune-older-than',
      async () => ['populate', dist, '--app', 'my-app', '--store', store, '--prune-older-than', '2 fortnights'],
      /Option `--prune-older-than` is "2 fortnights", not a duration.*48h/,
    ],
    [
      'a malformed --older-than',
      async () => ['prune', '--app', 'my-app', '--store', store, '--older-than', 'soon'],
      /Option `--older-than` is "soon", not a duration/,
    ],
    [
      '--keep without an age',
      async () => ['populate', dist, '--app', 'my-app', '--store', store, '--keep', '2'],
      /Option `--keep` needs an age.*--prune-older-than 48h/,
    ],
    [
      'an unknown flag',
      async () => ['populate', dist, '--app', 'my-app', '--store', store, '--bucket', 'x'],
      /Unknown option `--bucket`.*push-cache populate --help/,
    ],
    ['a flag without its value', async () => ['populate', dist, '--store', store, '--app'], /option `--app <name>` value is missing/i],
    ['a negative --keep', async () => ['prune', '--app', 'my-app', '--store', store, '--keep', '-1'], /Option `--keep` is "-1".*whole number/],
    [
      'a negative --concurrency',
      async () => ['populate', dist, '--app', 'my-app', '--store', store, '--concurrency', '-1'],
      /Option `--concurrency` is "-1".*whole number/,
    ],
    [
      'a non-numeric --concurrency',
      async () => ['populate', dist, '--app', 'my-app', '--store', store, '--concurrency', 'many'],
      /Option `--concurrency` is "many"/,
    ],
    [
      'a bad --s3-checksums',
      async () => ['populate', dist, '--app', 'my-app', '--store', store, '--s3-checksums', 'never'],
      /Option `--s3-checksums` is "never".*when_required/,
    ],
    ['an unknown command', async () => ['push', dist], /Unknown command `push`/],
    [
      'an S3 URL with one slash',
      async () => ['ls', '--app', 'my-app', '--store', 's3:/bucket'],
      /Option `store` is a malformed URL \(s3:\/bucket\).*Use s3:\/\/bucket/,
    ],
    ['an S3 URL without slashes', async () => ['ls', '--app', 'my-app', '--store', 's3:bucket'], /Option `store` is a malformed URL \(s3:bucket\)/],
    [
      'a concurrency that ends in EMFILE',
      async () => ['populate', dist, '--app', 'my-app', '--store', store, '--concurrency', '100000'],
      /`concurrency` is 100000.*at most 1024/,
    ],
    ['an image with a newline', async () => ['populate', dist, '--app', 'my-app', '--store', store, '--image', 'quay.io/a:1\nX'], /`image` is .*line break/],
    ['a 300-character app', async () => ['populate', dist, '--app', 'a'.repeat(300), '--store', store], /`app` is 300 characters long/],
  ]
  it.each(cases)('%s', async (_, args, message) => {
    const result = await runCli(await args())
    expect(result.code, result.stderr).toBe(2)
    expect(result.stderr).toMatch(/^\[push-cache\] error: /)
    expect(result.stderr).toMatch(message)
    expect(result.stderr).not.toMatch(/\n\s+at /) // no stack trace unless PUSH_CACHE_DEBUG=1
    expect(result.stdout).toBe('')
    expect(await tree(store)).toEqual([])
  })

  it.each(['redis//:PW@127.0.0.1:6379', 'valkey:PW@127.0.0.1', 'redis:/:PW@127.0.0.1:6379'])(
    'refuses the mistyped store %s, never printing its password',
    async (url) => {
      const result = await runCli(['populate', dist, '--app', 'my-app', '--store', url, '--json'], { cwd: work })
      expect(result.code).toBe(2)
      expect(result.stderr).toMatch(/Option `store` is a malformed URL/)
      expect(result.stderr + result.stdout).not.toContain('PW')
      expect(await tree(work)).not.toContainEqual(expect.stringMatching(/^redis/))
    },
  )

  it('refuses a mistyped --vwatch without printing its password', async () => {
    const result = await runCli(['watch', join(work, 'www'), '--app', 'my-app', '--store', store, '--vwatch', 'http//user:PW@host', '--once'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('Option `--vwatch` is "http//user:***@host"')
  })

  it('names an unreachable store STORE_UNREACHABLE in every command; exit 2 where it is the first request', async () => {
    const url = `valkey://127.0.0.1:${await closedPort()}`
    for (const [command, code] of [
      [['ls'], 2],
      [['pop', join(work, 'www')], 2],
      [['prune'], 2],
      [['populate', dist], 2],
      [['watch', join(work, 'www'), '--once'], 1],
    ] as const) {
      const result = await runCli([...command, '--app', 'my-app', '--store', url, '--json', '--retries', '0'])
      expect(result.code, command[0]).toBe(code)
      expect(result.stdout.trim().split('\n').at(-1)).toContain('"code":"STORE_UNREACHABLE"')
    }
  })

  it('with --json, the failure is one JSON report on stdout too', async () => {
    const result = await runCli(['populate', dist, '--app', 'a/b', '--store', store, '--json'])
    expect(result.code).toBe(2)
    expect(parseReport(result.stdout)).toMatchObject({
      ok: false,
      command: 'populate',
      errors: [{ code: 'INVALID_OPTION', message: expect.stringContaining('Option `app`') }],
    })
  })

  it('never prints the password of a store URL, not even in a debug stack trace', async () => {
    const url = `redis://deployer:s3cret@127.0.0.1:${await closedPort()}`
    for (const env of [{}, { PUSH_CACHE_DEBUG: '1' }, { PUSH_CACHE_STORE: url }]) {
      const args = 'PUSH_CACHE_STORE' in env ? ['ls', '--app', 'my-app', '--json'] : ['ls', '--app', 'my-app', '--store', url, '--json']
      const result = await runCli(args, { env })
      expect(result.code).toBe(2)
      expect(result.stderr + result.stdout).not.toContain('s3cret')
      expect(result.stderr).toContain('127.0.0.1')
    }
    expect((await runCli(['ls', '--app', 'my-app', '--store', url], { env: { PUSH_CACHE_DEBUG: '1' } })).stderr).toMatch(/\n\s+at /)
  })
})
