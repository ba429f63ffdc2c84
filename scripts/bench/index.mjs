#!/usr/bin/env node
// `npm run bench`: push-cache's CLI against its peers on the same synthetic builds, against real
// servers it starts on 127.0.0.1 (moto_server, redis-server). See docs/benchmark.md.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { Cluster, Redis } from 'iovalkey'
import { canMeasureResources, killRunning, measure } from './measure.mjs'
import { bigMemoryLine, formatBytes, formatTable, SUBJECT, summarize } from './report.mjs'
import { killAll, LOOPBACK, startCountingProxy, startDelayProxy, startMoto, startRedis, startRedisCluster } from './servers.mjs'
import { ensureBigTree, ensureBuilds, FULL, freshen, listFiles, QUICK } from './synthetic.mjs'

const USAGE = `Usage: npm run bench -- [options]
  --runs <n>       runs of every case; the table shows medians (default 3, 1 with --quick)
  --rtt <ms>       add this many ms to every round trip, through a loopback proxy (default 0)
  --quick          small data and 1 run: a smoke check (a few minutes)
  --skip-big       leave out the 1 GiB case (10 files of 100 MiB)
  --only <groups>  run only these, comma-separated: push, pop, valkey, big, big-tree,
                   valkey-foreign (big-tree, builds of 2,000, 100,000 and 250,000 small
                   files on the local store and S3, and valkey-foreign, one app of 2,000
                   files on a Valkey that holds 3,000,000 keys of other apps, run only
                   when named)
  --tree-files <n,n>  the file counts of the big-tree builds (default 2000,100000,250000;
                   2000,20000 with --quick); S3 pushes them up to 100,000 files
  --tree-s3-files <n>  the largest big-tree build also pushed to S3 (default 100000;
                   0: the local store only)
  --seed <text>    seed of the synthetic builds (default push-cache-bench)
  --timeout <s>    kill a run that takes longer (default 900)`

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string' },
    rtt: { type: 'string', default: '0' },
    quick: { type: 'boolean', default: false },
    'skip-big': { type: 'boolean', default: false },
    only: { type: 'string', default: 'push,pop,valkey,big' },
    seed: { type: 'string', default: 'push-cache-bench' },
    'tree-files': { type: 'string' },
    'tree-s3-files': { type: 'string' },
    timeout: { type: 'string', default: '900' },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  console.log(USAGE)
  process.exit(0)
}
const wholeNumber = (flag, text) => {
  if (!/^\d+$/.test(text)) {
    console.error(`--${flag} is ${JSON.stringify(text)}: use a whole number.\n${USAGE}`)
    process.exit(2)
  }
  return Number(text)
}
const runs = Math.max(1, wholeNumber('runs', flags.runs ?? (flags.quick ? '1' : '3')))
const rtt = wholeNumber('rtt', flags.rtt)
const timeoutMs = wholeNumber('timeout', flags.timeout) * 1000
const groups = new Set(flags.only.split(',').map((group) => group.trim()))
for (const group of groups)
  if (!['push', 'pop', 'valkey', 'big', 'big-tree', 'valkey-foreign'].includes(group)) {
    console.error(`--only names ${JSON.stringify(group)}: use push, pop, valkey, big, big-tree and valkey-foreign.\n${USAGE}`)
    process.exit(2)
  }
if (flags['skip-big']) groups.delete('big')

const ROOT = resolve(import.meta.dirname, '../..')
const BENCH = join(ROOT, '.bench')
const SCRATCH = join(BENCH, 'scratch')
const CLI = join(ROOT, 'dist/cli.js')
const PEER = join(import.meta.dirname, 'peer.mjs')
const APP = 'bench'
const BUCKET = 'bench'
const DATA_PREFIX = `data/${APP}/`
const NODE = process.execPath
const log = (line) => process.stderr.write(`${line}\n`)

if (!existsSync(CLI)) {
  log('dist/cli.js is missing: npm run build')
  const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit', timeout: 300_000 })
  if (build.status !== 0) process.exit(1)
}

const aws = spawnSync('aws', ['--version'], { encoding: 'utf8', timeout: 60_000 })
const awsVersion = aws.status === 0 ? `${aws.stdout}${aws.stderr}`.trim().split(' ')[0] : undefined
if (!awsVersion) log('aws CLI not found (`aws --version` failed): the `aws s3 sync` peer is skipped.')
const rclone = spawnSync('rclone', ['version'], { encoding: 'utf8', timeout: 60_000 })
const rcloneVersion = rclone.status === 0 ? rclone.stdout.split('\n')[0] : undefined
if (!rcloneVersion) log('rclone not found (`rclone version` failed): the `rclone copy --checksum` peer is skipped.')

// Ctrl-C or a crash must not leave servers or runs behind.
process.once('exit', () => {
  killRunning()
  killAll()
})
for (const signal of ['SIGINT', 'SIGTERM'])
  process.once(signal, () => {
    log(`\n${signal}: stopping the servers and the run in progress`)
    process.exit(130)
  })

const startedAt = performance.now()
const loadAtStart = os.loadavg()[0]
const sizes = flags.quick ? QUICK : FULL
log(`Synthetic builds under ${relative(ROOT, BENCH)}/ (seed ${flags.seed}${flags.quick ? ', quick sizes' : ''})…`)
const data = await ensureBuilds(BENCH, { seed: flags.seed, app: APP, sizes, big: groups.has('big') })
/** `big-tree`: file counts of builds of small files, for manifests and memory that must not grow with them. */
const TREE_SIZES = (flags['tree-files'] ?? (flags.quick ? '2000,20000' : '2000,100000,250000'))
  .split(',')
  .map((files) => wholeNumber('tree-files', files.trim()))
/** moto takes ~15 minutes for a cold push of 100,000 files: larger trees are pushed to the local store only. */
const TREE_S3_MAX_FILES = wholeNumber('tree-s3-files', flags['tree-s3-files'] ?? '100000')
/**
 * moto (5.2) answers each ListObjectsV2 page by filtering and sorting every key of the bucket: ~0.25 s
 * of its one Python thread per page at 100,000 keys, whatever the page, where S3's cost is the
 * page's. The push of that build again lists it in 125 ranges, 32 at once, so each page waits for
 * ~32 others in moto (8 s idle, past the default 30 s request deadline on a loaded machine): a
 * deadline for moto's listing, not one push-cache's users need.
 */
const MOTO_LISTING_DEADLINE = ['--request-timeout', '300000']
const trees = []
if (groups.has('big-tree')) for (const files of TREE_SIZES) trees.push(await ensureBigTree(join(BENCH, 'trees'), { seed: flags.seed, app: APP, files }))
/** `valkey-foreign`: keys of other apps on the server (`data:otherapp:<n>`), and the one app's build. */
const FOREIGN_KEYS = flags.quick ? 100_000 : 3_000_000
const foreignBuild = groups.has('valkey-foreign') ? await ensureBigTree(join(BENCH, 'trees'), { seed: flags.seed, app: APP, files: 2_000 }) : undefined
await rm(SCRATCH, { recursive: true, force: true })
await mkdir(SCRATCH, { recursive: true })

const moto = await startMoto(BUCKET)
const redis = await startRedis(SCRATCH)
const counter = await startCountingProxy(moto.port)
const delays = rtt > 0 ? [await startDelayProxy(counter.port, rtt), await startDelayProxy(redis.port, rtt)] : []
const s3Endpoint = `http://${LOOPBACK}:${rtt > 0 ? delays[0].port : counter.port}`
const valkeyPort = rtt > 0 ? delays[1].port : redis.port
const valkeyOptions = { commandTimeout: 30_000, maxRetriesPerRequest: 1 }
const valkey = new Redis({ host: LOOPBACK, port: redis.port, ...valkeyOptions })
/**
 * valkey-foreign on a 3-master cluster too: its masters (for commandstats and FLUSHALL) and a client of
 * the whole. Not behind the delay proxy (a cluster's nodes name their own ports), so only without `--rtt`.
 */
const cluster = groups.has('valkey-foreign') && rtt === 0 ? await startRedisCluster(SCRATCH) : undefined
const clusterMasters = cluster?.ports.map((port) => new Redis({ host: LOOPBACK, port, ...valkeyOptions })) ?? []
const clusterClient =
  cluster &&
  new Cluster(
    cluster.ports.map((port) => ({ host: LOOPBACK, port })),
    { enableAutoPipelining: true, redisOptions: valkeyOptions },
  )

/** The children's environment: ours without AWS and push-cache settings, then the bench's S3 server and dummy credentials. */
function childEnv(endpoint) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(AWS_|PUSH_CACHE_|BUILD_TIMESTAMP$|SOURCE_DATE_EPOCH$)/.test(name)))
  return {
    ...env,
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    // No profile of the user's may change what is measured.
    AWS_CONFIG_FILE: join(SCRATCH, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(SCRATCH, 'aws-credentials'),
    RCLONE_CONFIG: join(SCRATCH, 'rclone.conf'),
    CI: 'true',
  }
}
const measuredEnv = childEnv(s3Endpoint)
/** For setting the stage: straight to moto, neither delayed nor counted. */
const directEnv = childEnv(moto.endpoint)

let timestamp = Math.floor(Date.now() / 1000)
const nextTimestamp = () => String(++timestamp)

const cases = {
  pushCold: { title: `S3 push, cold: build A (${describe(data.a)}) into an empty bucket` },
  pushSame: { title: 'S3 push, same build again: build A once more, fresh mtimes, onto build A' },
  pushChanged: { title: `S3 push, 5% changed: build B (${data.b.changed} files differ from A) onto build A` },
  popCold: { title: `S3 pop, cold: the bucket holds build A, the destination is empty` },
  popChanged: { title: 'S3 pop, 5% changed: the bucket holds A and B, the destination holds what the last pop wrote' },
  valkey: { title: `Valkey populate, cold: ${describe(data.valkey)} into an empty server` },
  big: { title: `S3 push, big files: ${data.big ? describe(data.big) : ''} into an empty bucket (memory)` },
}
/** The steps of the big-tree group, each a case per build size. */
const TREE_STEPS = {
  cold: 'local push, cold',
  again: 'local push, same build again',
  'same-ts': 'local push, same build again at the same timestamp',
  's3-cold': 'S3 push, cold',
  's3-again': 'S3 push, same build again',
  ls: 'local ls',
  prune: 'local prune of the first build',
  pop: 'local pop into an empty directory',
}
for (const tree of trees)
  for (const [step, what] of Object.entries(TREE_STEPS)) cases[`tree-${tree.files}-${step}`] = { title: `${what}: ${describe(tree)} (big-tree)` }
/** The steps of the valkey-foreign group, each a case: push-cache among foreign keys, its peers the same without them and with SCAN. */
const FOREIGN_STEPS = {
  adopt: 'first ls of the app ever (valkey.scan once: its one SCAN)',
  cold: 'populate, cold',
  again: 'populate, same build again',
  ls: 'ls',
  pop: 'pop into an empty directory',
  prune: 'prune of the first build',
}
if (foreignBuild)
  for (const [step, what] of Object.entries(FOREIGN_STEPS))
    cases[`foreign-${step}`] = {
      title: `Valkey ${what}: ${describe(foreignBuild)}, ${FOREIGN_KEYS.toLocaleString('en-US')} keys of other apps (valkey-foreign)`,
    }
function describe({ files, bytes }) {
  return `${files.toLocaleString('en-US')} files, ${formatBytes(bytes)}`
}

const s3Store = `s3://${BUCKET}`
/** rclone's on-the-fly remote: told only where the server is, its own defaults otherwise. */
const RCLONE_REMOTE = ['--s3-provider', 'Other', '--s3-endpoint', s3Endpoint, '--s3-env-auth', '--s3-region', 'us-east-1', '--s3-force-path-style']
const populateArgs = (dir) => [CLI, 'populate', dir, '--app', APP, '--store', s3Store, '--timestamp', nextTimestamp(), '--json']
const pushTools = [
  { tool: SUBJECT, command: (dir) => [NODE, populateArgs(dir)] },
  // What deploy/Dockerfile sets: V8's young generation kept at 1 MiB instead of growing to 32. It is
  // about memory, which a longer link does not change: measured without an added round trip only.
  rtt === 0 && { tool: `${SUBJECT}, small young gen`, command: (dir) => [NODE, ['--max-semi-space-size=1', ...populateArgs(dir)]] },
  awsVersion && {
    tool: 'aws s3 sync',
    command: (dir) => ['aws', ['s3', 'sync', dir, `s3://${BUCKET}/${DATA_PREFIX}`, '--endpoint-url', s3Endpoint, '--only-show-errors', '--no-progress']],
  },
  rcloneVersion && {
    tool: 'rclone copy --checksum --transfers 32',
    // As many transfers as push-cache sends to S3: rclone's default of 4 would measure the setting, not the tool.
    command: (dir) => ['rclone', ['copy', '--checksum', '--transfers', '32', dir, `:s3:${BUCKET}/${DATA_PREFIX}`, ...RCLONE_REMOTE]],
  },
  // The loops send every file every time: only their cold push says something (the floor).
  // One request at a time costs a round trip per file: 4 minutes a case at 100 ms, and says nothing new there.
  rtt < 50 && { tool: 'SDK PutObject, 1 at a time', coldOnly: true, command: (dir) => [NODE, [PEER, 's3-put', dir, BUCKET, DATA_PREFIX, '1']] },
  { tool: 'SDK PutObject, 32 at a time', coldOnly: true, command: (dir) => [NODE, [PEER, 's3-put', dir, BUCKET, DATA_PREFIX, '32']] },
  { tool: 'HTTP PUT, 32 at a time', coldOnly: true, command: (dir) => [NODE, [PEER, 'http-put', dir, BUCKET, DATA_PREFIX, '32']] },
  // A long link wants more in flight than 32: the best bare loop there.
  { tool: 'HTTP PUT, 128 at a time', coldOnly: true, command: (dir) => [NODE, [PEER, 'http-put', dir, BUCKET, DATA_PREFIX, '128']] },
].filter(Boolean)
const popTools = [
  { tool: SUBJECT, command: (dest) => [NODE, [CLI, 'pop', dest, '--app', APP, '--store', s3Store, '--json']] },
  awsVersion && {
    tool: 'aws s3 sync',
    command: (dest) => ['aws', ['s3', 'sync', `s3://${BUCKET}/${DATA_PREFIX}`, dest, '--endpoint-url', s3Endpoint, '--only-show-errors', '--no-progress']],
  },
  rcloneVersion && {
    tool: 'rclone copy --checksum --transfers 32',
    command: (dest) => ['rclone', ['copy', '--checksum', '--transfers', '32', `:s3:${BUCKET}/${DATA_PREFIX}`, dest, ...RCLONE_REMOTE]],
  },
].filter(Boolean)
const valkeyStore = `redis://${LOOPBACK}:${valkeyPort}`
const valkeyTools = [
  { tool: SUBJECT, command: (dir, ts) => [NODE, [CLI, 'populate', dir, '--app', APP, '--store', valkeyStore, '--timestamp', ts, '--json']] },
  // A round trip per file: 200 s a case at 20 ms, and says nothing new there.
  rtt < 20 && { tool: 'SET, 1 at a time', command: (dir, ts) => [NODE, [PEER, 'valkey-set', dir, String(valkeyPort), `data:${APP}:${ts}:`]] },
  { tool: 'SET, pipelined', command: (dir, ts) => [NODE, [PEER, 'valkey-pipeline', dir, String(valkeyPort), `data:${APP}:${ts}:`]] },
].filter(Boolean)

const results = []
function record(caseId, tool, run, runNumber) {
  let entry = results.find((result) => result.case === caseId && result.tool === tool)
  if (!entry) {
    entry = { case: caseId, title: cases[caseId].title, tool, runs: [] }
    results.push(entry)
  }
  entry.runs.push(run)
  const resources = run.cpuS === null ? '' : `, CPU ${run.cpuS.toFixed(2)} s, peak RSS ${Math.round(run.rssMb)} MiB`
  log(`  run ${runNumber}/${runs}  ${caseId.padEnd(11)} ${tool.padEnd(28)} ${run.wallS.toFixed(2)} s${resources}`)
}

/** push-cache's `--json` report: the last line of its stdout. */
function reportOf(stdout) {
  const line = stdout.trim().split('\n').at(-1)
  try {
    return line ? JSON.parse(line) : undefined
  } catch {
    return undefined
  }
}

/** Runs `[command, args]` measured, with its S3 requests counted. */
async function measureS3([command, args]) {
  counter.take()
  const run = await measure(command, args, { env: measuredEnv, timeoutMs, scratch: SCRATCH })
  return { wallS: run.wallS, cpuS: run.cpuS, rssMb: run.rssMb, requests: counter.take(), report: reportOf(run.stdout) }
}

async function expectObjects(expected, what) {
  const found = await moto.count(DATA_PREFIX)
  if (found !== expected) throw new Error(`${what}: the bucket holds ${found} objects under ${DATA_PREFIX}, expected ${expected}`)
}

async function pushRuns(runNumber) {
  for (const { tool, command, coldOnly } of pushTools) {
    await moto.reset()
    for (const [caseId, build] of [
      ['pushCold', data.a],
      ...(coldOnly
        ? []
        : [
            ['pushSame', data.a],
            ['pushChanged', data.b],
          ]),
    ]) {
      await freshen(build.dir)
      record(caseId, tool, await measureS3(command(build.dir)), runNumber)
      if (caseId === 'pushCold') await expectObjects(build.files, `${tool}, cold push`)
    }
  }
}

async function popRuns(runNumber) {
  await moto.reset()
  const setStage = (build) =>
    measure(NODE, [CLI, 'populate', build.dir, '--app', APP, '--store', s3Store, '--timestamp', nextTimestamp()], {
      env: directEnv,
      timeoutMs,
      scratch: SCRATCH,
    })
  const destOf = (tool) => join(SCRATCH, 'pop', tool.replace(/\W+/g, '-'))
  await setStage(data.a)
  for (const { tool } of popTools) await rm(destOf(tool), { recursive: true, force: true })
  for (const [caseId, build] of [
    ['popCold', data.a],
    ['popChanged', data.b],
  ]) {
    if (build === data.b) await setStage(data.b)
    for (const { tool, command } of popTools) {
      record(caseId, tool, await measureS3(command(destOf(tool))), runNumber)
      const popped = (await listFiles(destOf(tool))).length
      if (popped < build.files) throw new Error(`${tool} popped ${popped} files, fewer than the ${build.files} of the build`)
    }
  }
}

/** Calls and microseconds of server time per command since FLUSHALL, from INFO commandstats, summed over `servers`. */
async function commandStats(servers) {
  const stats = {}
  for (const server of servers)
    for (const [, command, calls, usec] of (await server.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
      stats[command] ??= { calls: 0, usec: 0 }
      stats[command].calls += Number(calls)
      stats[command].usec += Number(usec)
    }
  return stats
}

/**
 * Runs `[command, args]` measured, with the Valkey commands it sent and the server's time on each
 * (`serverUs`, in results.json: whether a slower step is the server's doing), from INFO commandstats
 * before and after.
 */
async function measureValkey([command, args], env = measuredEnv, servers = [valkey]) {
  const before = await commandStats(servers)
  const run = await measure(command, args, { env, timeoutMs, scratch: SCRATCH })
  const after = await commandStats(servers)
  // The bench's own INFO on each server (the `before` above) is not the tool's.
  const sent = Object.entries(after)
    .map(([name, { calls, usec }]) => [name, calls - (before[name]?.calls ?? 0) - (name === 'info' ? servers.length : 0), usec - (before[name]?.usec ?? 0)])
    .filter(([, calls]) => calls > 0)
  const requests = Object.fromEntries(sent.map(([name, calls]) => [name, calls]))
  const serverUs = Object.fromEntries(sent.map(([name, , usec]) => [name, usec]))
  return { wallS: run.wallS, cpuS: run.cpuS, rssMb: run.rssMb, requests, serverUs, report: reportOf(run.stdout) }
}

async function valkeyRuns(runNumber) {
  for (const { tool, command } of valkeyTools) {
    await valkey.flushall()
    const ts = nextTimestamp()
    record('valkey', tool, await measureValkey(command(data.valkey.dir, ts)), runNumber)
    const keys = (await valkey.keys(`data:${APP}:${ts}:*`)).length
    if (keys !== data.valkey.files) throw new Error(`${tool}: Valkey holds ${keys} data keys of the build, expected ${data.valkey.files}`)
  }
}

async function bigRuns(runNumber) {
  for (const { tool, command } of pushTools) {
    await moto.reset()
    await freshen(data.big.dir)
    record('big', tool, await measureS3(command(data.big.dir)), runNumber)
    await expectObjects(data.big.files, `${tool}, 1 GiB push`)
  }
  await moto.reset() // a gigabyte less for moto to hold
}

/** Each size on a local store of its own: push, push again (nothing to write), ls, prune the first build, pop. */
async function treeRuns(runNumber) {
  for (const tree of trees) {
    const store = join(SCRATCH, 'tree-store')
    const dest = join(SCRATCH, 'tree-pop')
    await rm(store, { recursive: true, force: true })
    await rm(dest, { recursive: true, force: true })
    const app = ['--app', APP, '--store', `file:${store}`, '--json']
    const first = nextTimestamp()
    const second = nextTimestamp()
    const steps = [
      ['cold', [CLI, 'populate', tree.dir, ...app, '--timestamp', first]],
      ['again', [CLI, 'populate', tree.dir, ...app, '--timestamp', second]],
      // A re-run CI job: the build at that timestamp is read and compared, nothing is written.
      ['same-ts', [CLI, 'populate', tree.dir, ...app, '--timestamp', second]],
      ['ls', [CLI, 'ls', ...app]],
      ['prune', [CLI, 'prune', ...app, '--older-than', '1s', '--keep', '1']],
      ['pop', [CLI, 'pop', dest, ...app]],
    ]
    for (const [step, args] of steps) {
      const run = await measure(NODE, args, { env: measuredEnv, timeoutMs, scratch: SCRATCH })
      record(`tree-${tree.files}-${step}`, SUBJECT, { wallS: run.wallS, cpuS: run.cpuS, rssMb: run.rssMb, report: reportOf(run.stdout) }, runNumber)
    }
    const popped = (await listFiles(dest)).length
    if (popped !== tree.files) throw new Error(`big-tree: pop wrote ${popped} files of the ${tree.files} pushed`)
    if (tree.files > TREE_S3_MAX_FILES) continue
    // The same build twice into an empty bucket: the second push reads the first one's manifest.
    await moto.reset()
    for (const step of ['s3-cold', 's3-again']) {
      const args = [CLI, 'populate', tree.dir, '--app', APP, '--store', s3Store, '--timestamp', nextTimestamp(), '--json', ...MOTO_LISTING_DEADLINE]
      const run = await measureS3([NODE, args])
      record(`tree-${tree.files}-${step}`, SUBJECT, run, runNumber)
    }
    await moto.reset()
  }
}

/**
 * One app's steps on a server (or `onCluster`, the cluster) that holds `foreign` keys of other apps,
 * as `tool`. push-cache runs among them; its peers are itself on an empty server and itself with
 * `valkey.scan: always`.
 */
async function foreignSteps(runNumber, tool, { foreign, app, scan, onCluster }) {
  const dest = join(SCRATCH, 'foreign-pop')
  await rm(dest, { recursive: true, force: true })
  const env = scan ? { ...measuredEnv, PUSH_CACHE_VALKEY_SCAN: scan } : measuredEnv
  const store = onCluster ? `valkey+cluster://${cluster.ports.map((port) => `${LOOPBACK}:${port}`).join(',')}` : valkeyStore
  const args = ['--app', app, '--store', store, '--json']
  const steps = {
    adopt: [CLI, 'ls', ...args],
    cold: [CLI, 'populate', foreignBuild.dir, ...args, '--timestamp', nextTimestamp()],
    again: [CLI, 'populate', foreignBuild.dir, ...args, '--timestamp', nextTimestamp()],
    ls: [CLI, 'ls', ...args],
    pop: [CLI, 'pop', dest, ...args],
    prune: [CLI, 'prune', ...args, '--older-than', '1s', '--keep', '1'],
  }
  const servers = onCluster ? clusterMasters : [valkey]
  await Promise.all(servers.map((server) => server.flushall()))
  if (onCluster) await fillCluster(foreign)
  // https://redis.io/docs/latest/commands/debug/ POPULATE: `data:otherapp:<n>`, fast, server-side.
  else if (foreign > 0) await valkey.call('DEBUG', 'POPULATE', String(foreign), 'data:otherapp')
  for (const [step, argv] of Object.entries(steps)) record(`foreign-${step}`, tool, await measureValkey([NODE, argv], env, servers), runNumber)
  const popped = (await listFiles(dest)).length
  if (popped !== foreignBuild.files) throw new Error(`valkey-foreign, ${tool}: pop wrote ${popped} files of the ${foreignBuild.files} pushed`)
}

/**
 * DEBUG POPULATE's keys and values on the cluster, where DEBUG is off (the test suite's setup): SETs
 * that auto-pipelining sends per master, a window at a time.
 */
async function fillCluster(count) {
  const WINDOW = 10_000
  for (let start = 0; start < count; start += WINDOW)
    await Promise.all(Array.from({ length: Math.min(WINDOW, count - start) }, (_, i) => clusterClient.set(`data:otherapp:${start + i}`, `value:${start + i}`)))
}

async function foreignRuns(runNumber) {
  await foreignSteps(runNumber, SUBJECT, { foreign: FOREIGN_KEYS, app: APP })
  await foreignSteps(runNumber, `${SUBJECT}, no foreign keys`, { foreign: 0, app: APP })
  await foreignSteps(runNumber, `${SUBJECT}, valkey.scan always`, { foreign: FOREIGN_KEYS, app: APP, scan: 'always' })
  if (!cluster) return
  await foreignSteps(runNumber, `${SUBJECT}, cluster`, { foreign: FOREIGN_KEYS, app: APP, onCluster: true })
  await foreignSteps(runNumber, `${SUBJECT}, cluster, no foreign keys`, { foreign: 0, app: APP, onCluster: true })
}

/** Peak RSS of each big-tree push step by build size, and its ratio to the smallest build's: memory must not grow with the file count. */
function treeMemoryLines(rows) {
  const lines = []
  for (const step of ['cold', 'again', 'same-ts', 's3-cold', 's3-again']) {
    const sizes = trees
      .map((tree) => ({ files: tree.files, row: rows.find((row) => row.case === `tree-${tree.files}-${step}`) }))
      .filter(({ row }) => row?.rssMb)
    if (sizes.length < 2) continue
    const base = sizes[0].row.rssMb
    const cells = sizes.map(
      ({ files, row }, index) =>
        `${files.toLocaleString('en-US')} files ${Math.round(row.rssMb)} MiB${index === 0 ? '' : ` (${(row.rssMb / base).toFixed(1)}×)`}`,
    )
    lines.push(`  ${TREE_STEPS[step]}: ${cells.join(', ')}`)
  }
  return lines.length > 0 ? ['', 'big-tree peak RSS by build size (× the smallest build):', ...lines] : []
}

let failure
try {
  log(
    `Servers: moto ${moto.endpoint}, redis-server ${LOOPBACK}:${redis.port}${rtt > 0 ? `, each behind a proxy adding ${rtt} ms per round trip` : ''}. ${runs} run(s).`,
  )
  for (let runNumber = 1; runNumber <= runs; runNumber++) {
    if (groups.has('push')) await pushRuns(runNumber)
    if (groups.has('pop')) await popRuns(runNumber)
    if (groups.has('valkey')) await valkeyRuns(runNumber)
    if (groups.has('big')) await bigRuns(runNumber)
    if (groups.has('big-tree')) await treeRuns(runNumber)
    if (groups.has('valkey-foreign')) await foreignRuns(runNumber)
  }
} catch (error) {
  failure = error
} finally {
  valkey.disconnect()
  clusterClient?.disconnect()
  for (const master of clusterMasters) master.disconnect()
  await Promise.all([...delays.map((proxy) => proxy.close()), counter.close(), moto.stop(), redis.stop(), cluster?.stop()])
}

const rows = summarize(results)
const durationS = (performance.now() - startedAt) / 1000
const machine = {
  cpu: os.cpus()[0]?.model,
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  os: `${os.type()} ${os.release()}`,
  node: process.version,
  aws: awsVersion ?? null,
  // Other work on the machine slows every tool: a load above the core count means the numbers are noisy.
  loadAverage: { start: loadAtStart, end: os.loadavg()[0] },
}
const out = [
  `push-cache bench, ${new Date().toISOString()}: ${runs} run(s), medians; rtt ${rtt} ms${flags.quick ? '; quick sizes' : ''}`,
  `${machine.cores} × ${machine.cpu}, ${machine.memoryGiB} GiB, ${machine.os}, Node ${machine.node}; load average ${loadAtStart.toFixed(1)} at the start, ${machine.loadAverage.end.toFixed(1)} at the end`,
  "pc/peer: push-cache wall time ÷ the peer's (below 1: push-cache is faster). CPU s: user + system seconds of the client process.",
  `peak RSS: its largest resident set (GNU time)${canMeasureResources ? '' : ': /usr/bin/time is missing, so neither is measured'}. requests: S3 requests by operation, Valkey commands from INFO commandstats.`,
  ...formatTable(rows),
  ...bigMemoryLine(rows),
  ...treeMemoryLines(rows),
  '',
  `Took ${Math.round(durationS)} s.`,
]
console.log(out.join('\n'))
const resultsFile = join(BENCH, 'results.json')
await writeFile(
  resultsFile,
  `${JSON.stringify({ date: new Date().toISOString(), machine, options: { runs, rtt, quick: flags.quick, groups: [...groups], seed: flags.seed }, data, durationS, rows, error: failure?.message }, null, 2)}\n`,
)
log(`Wrote ${relative(ROOT, resultsFile)}`)
if (failure) {
  log(`\nThe bench failed: ${failure.message}`)
  process.exit(1)
}
