// Each command runs with exactly the permissions the README lists (test/helpers/permissions.ts):
// an IAM user per command on a moto that enforces IAM, an ACL user per command on Valkey.
import { randomBytes } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { Redis } from 'iovalkey'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseReport, runCli } from '../helpers/cli'
import { tempDir, writeTree } from '../helpers/fs'
import { type AuthMoto, hasMoto, startAuthMoto } from '../helpers/moto'
import { COMMANDS, type Command, permissionsTable, s3Policy, valkeyAclRules } from '../helpers/permissions'
import { appKeys, uniqueApp, valkeyEnv, valkeyUrl } from '../helpers/valkey'

const NOW = Math.floor(Date.now() / 1000)
const DAY = 86_400

/**
 * Every command, each run with only its own permissions, on a build pushed twice: the second push
 * replaces `js/old.js` by `js/new.js`, so the prune has an old build and a file to delete.
 * `large.bin` goes up as a multipart upload on S3.
 */
async function runEveryCommand(store: string, app: string, envFor: (command: Command) => Record<string, string>) {
  const dist = await writeTree(await tempDir(), { 'fed-mods.json': '{}', 'js/old.js': 'old', 'large.bin': randomBytes(9 * 1024 * 1024 + 1) })
  const run = (command: Command, ...args: string[]) => runCli([command, ...args, '--app', app, '--store', store, '--json'], { env: envFor(command) })
  const ok = async (command: Command, ...args: string[]) => {
    const result = await run(command, ...args)
    expect(result.code, `${command}: ${result.stderr}`).toBe(0)
    return parseReport(result.stdout)
  }
  await ok('populate', dist, '--timestamp', String(NOW - 30 * DAY))
  await writeTree(dist, { 'js/new.js': 'new' })
  await rm(join(dist, 'js/old.js'))
  await ok('populate', dist, '--timestamp', String(NOW - 20 * DAY))
  expect((await ok('ls')).builds).toHaveLength(2)
  const dest = join(await tempDir(), 'www')
  expect(await ok('pop', dest)).toMatchObject({ files: 4 })
  expect(await readFile(join(dest, 'js/new.js'), 'utf8')).toBe('new')
  const pruned = await ok('prune', '--older-than', '1d', '--keep', '1')
  return { dist, pruned }
}

describe.skipIf(!hasMoto)('S3: each command with only its IAM policy (needs moto: pip install "moto[server]")', () => {
  const bucket = 'assets'
  const app = 'my-app'
  let moto: AuthMoto
  const keys = new Map<string, { accessKeyId: string; secretAccessKey: string }>()
  beforeAll(async () => {
    moto = await startAuthMoto()
    await moto.createBucket(bucket)
    for (const command of COMMANDS) keys.set(command, await moto.createUser(`${command}-user`, s3Policy(command, bucket, app, { moto: true })))
    await moto.enforce()
  })
  afterAll(() => moto?.stop())

  const envFor = (command: string) => ({
    AWS_ENDPOINT_URL_S3: moto.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: keys.get(command)!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: keys.get(command)!.secretAccessKey,
  })
  const objects = async (prefix = '') =>
    ((await moto.admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((object) => object.Key!).sort()

  it('populate, ls, pop and prune each succeed with exactly the listed actions', async () => {
    const { dist, pruned } = await runEveryCommand(`s3://${bucket}`, app, envFor)
    expect(pruned).toMatchObject({ builds: [NOW - 30 * DAY], kept: 1 })
    expect(await objects(`data/${app}/`)).toEqual([`data/${app}/fed-mods.json`, `data/${app}/js/new.js`, `data/${app}/large.bin`])

    // The listed actions are all there is: pop's key cannot write, populate's cannot write another app.
    const refused = await runCli(['populate', dist, '--app', app, '--store', `s3://${bucket}`, '--timestamp', String(NOW)], { env: envFor('pop') })
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toContain('AccessDenied')
    const elsewhere = await runCli(['populate', dist, '--app', 'other-app', '--store', `s3://${bucket}`], { env: envFor('populate') })
    expect(elsewhere.code).not.toBe(0)
    expect(await objects(`manifests/${app}/`)).toEqual([`manifests/${app}/${NOW - 20 * DAY}`])
    expect(await objects('data/other-app/')).toEqual([])
  })
})

describe('Valkey: each command as an ACL user with only its commands and the app’s keys', () => {
  const app = uniqueApp()
  const password = randomBytes(12).toString('hex')
  const admin = new Redis(valkeyEnv().standalone)
  const userOf = (command: string) => `${app}-${command}`
  beforeAll(async () => {
    for (const command of COMMANDS) await admin.call('ACL', 'SETUSER', userOf(command), 'on', `>${password}`, ...valkeyAclRules(command, app))
  })
  afterAll(async () => {
    await admin.call('ACL', 'DELUSER', ...COMMANDS.map(userOf))
    admin.disconnect()
  })

  // Secrets from the environment, as the README recommends.
  const envFor = (command: string) => ({ PUSH_CACHE_VALKEY_USERNAME: userOf(command), PUSH_CACHE_VALKEY_PASSWORD: password })

  /** The commands the server refused the users of this app, by name. */
  const refusedCommands = async () => {
    const log = (await admin.call('ACL', 'LOG')) as unknown[][]
    const entries = log.map((flat) => Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, index) => [flat[2 * index], flat[2 * index + 1]])))
    return new Set(entries.filter((entry) => String(entry.username).startsWith(app) && entry.reason === 'command').map((entry) => entry.object))
  }

  it('populate, ls, pop and prune each succeed with exactly the listed commands and key patterns', async () => {
    const { dist } = await runEveryCommand(valkeyUrl(), app, envFor)
    // The old build is gone but for the files the current one reuses.
    const kept = await appKeys(admin, app)
    expect(kept.filter((key) => key.startsWith('manifest:'))).toEqual([`manifest:${app}:${NOW - 20 * DAY}`])
    expect(kept.filter((key) => key.endsWith('.js'))).toEqual([`data:${app}:${NOW - 20 * DAY}:js/new.js`])
    // Nothing else was refused on the way: CONFIG GET (the largest value the server takes) has a default.
    expect(await refusedCommands()).toEqual(new Set(['config|get']))

    const refused = await runCli(['populate', dist, '--app', app, '--store', valkeyUrl(), '--timestamp', String(NOW)], { env: envFor('pop') })
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toContain('NOPERM')
    const other = uniqueApp()
    const elsewhere = await runCli(['populate', dist, '--app', other, '--store', valkeyUrl()], { env: envFor('populate') })
    expect(elsewhere.code).not.toBe(0)
    expect(await appKeys(admin, app)).toEqual(kept)
    expect(await appKeys(admin, other)).toEqual([])
  })
})

it('the README lists these permissions, and an ACL user made from them', async () => {
  const readme = await readFile('README.md', 'utf8')
  expect(readme).toContain(permissionsTable())
  expect(readme).toContain(`ACL SETUSER inventory-populate on >PASSWORD ${valkeyAclRules('populate', 'inventory').join(' ')}`)
})
