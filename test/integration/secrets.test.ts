// Every command, succeeding and failing, with distinctive secrets set: none of them may appear in
// stdout, stderr (debug stack traces included), the --json report, or a thrown error's cause chain.
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { Redis } from 'iovalkey'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pushFiles } from '../../src/adapters/push-files'
import { collectFiles } from '../../src/core/push/collect-files'
import { silentLogger } from '../../src/core/util/logger'
import { resolveOptions } from '../../src/options'
import { BUILD, type CliResult, closedPort, runCli } from '../helpers/cli'
import { tempDir, writeTree } from '../helpers/fs'
import { guardedMoto, hasMoto } from '../helpers/moto'
import { createBucket, s3CliEnv, s3StoreOptions } from '../helpers/s3'
import { uniqueApp, valkeyEnv } from '../helpers/valkey'

const mark = (label: string) => `${label}-${randomBytes(6).toString('hex')}`
const SECRETS = {
  accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
  secretAccessKey: mark('s3-secret'),
  sessionToken: mark('session-token'),
  // Pasted into a URL unencoded, as people do: `@`, `/` and `:` inside.
  valkeyPassword: `${mark('valkey-pw')}@/:x`,
  wrongPassword: mark('wrong-pw'),
}
/** What must never show: each secret, and the part of a password before the characters that could cut it short. */
const NEEDLES = [SECRETS.accessKeyId, SECRETS.secretAccessKey, SECRETS.sessionToken, SECRETS.valkeyPassword.split('@')[0]!, SECRETS.wrongPassword]

const S3_SECRETS = { AWS_ACCESS_KEY_ID: SECRETS.accessKeyId, AWS_SECRET_ACCESS_KEY: SECRETS.secretAccessKey, AWS_SESSION_TOKEN: SECRETS.sessionToken }

function expectNoSecret(runs: CliResult[]): void {
  for (const { stdout, stderr } of runs) for (const needle of NEEDLES) expect(`${stdout}\n${stderr}`).not.toContain(needle)
}

/** Every command, with PUSH_CACHE_DEBUG=1 (stack traces); populate and pop print `--json` reports, ls and prune print for people. */
async function runEveryCommand(store: string, env: Record<string, string>): Promise<CliResult[]> {
  const dist = await writeTree(await tempDir(), BUILD)
  const app = uniqueApp()
  const run = (...args: string[]) => runCli([...args, '--app', app, '--store', store], { env: { PUSH_CACHE_DEBUG: '1', ...env } })
  const populated = await run('populate', dist, '--json')
  return [populated, ...(await Promise.all([run('ls'), run('pop', join(await tempDir(), 'www'), '--json'), run('prune', '--older-than', '1d', '--keep', '1')]))]
}

describe('S3', () => {
  it('keys and session tokens never show, whether the commands succeed or fail', async () => {
    const bucket = await createBucket()
    const env = { ...s3CliEnv(), ...S3_SECRETS }
    const succeeded = await runEveryCommand(`s3://${bucket}`, env)
    expect(succeeded.map((run) => run.code)).toEqual([0, 0, 0, 0])
    const unreachable = await runEveryCommand(`s3://${bucket}`, { ...env, AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${await closedPort()}` })
    const missingBucket = await runEveryCommand(`s3://${bucket}-missing`, env)
    // populate of an empty directory never runs: each of these fails at the store.
    expect([...unreachable, ...missingBucket].map((run) => run.code)).toEqual(Array(8).fill(2))
    expectNoSecret([...succeeded, ...unreachable, ...missingBucket])
  })

  it('nor anywhere in the cause chain of an error a plugin throws', async () => {
    const files = await collectFiles(await writeTree(await tempDir(), BUILD))
    const credentials = { accessKeyId: SECRETS.accessKeyId, secretAccessKey: SECRETS.secretAccessKey, sessionToken: SECRETS.sessionToken }
    const options = resolveOptions({ app: 'my-app', store: 's3://no-such-bucket-here', s3: { ...s3StoreOptions(), credentials } }, {})
    const error = await pushFiles({ files, options, logger: silentLogger }).catch((thrown: unknown) => thrown)
    // The first request (the app's writer lock) meets the missing bucket.
    expect(error).toMatchObject({ code: 'STORE_UNREACHABLE', message: expect.stringContaining('Bucket no-such-bucket-here does not exist') })
    const everything = inspect(error, { depth: Number.POSITIVE_INFINITY, showHidden: true })
    expect(everything).toContain('NoSuchBucket')
    for (const needle of NEEDLES) expect(everything).not.toContain(needle)
  })

  describe.skipIf(!hasMoto)('refused credentials (needs moto: pip install "moto[server]")', () => {
    const guarded = guardedMoto()

    it('never show either', async () => {
      const runs = await runEveryCommand('s3://guarded', { AWS_ENDPOINT_URL_S3: guarded.moto.endpoint, AWS_REGION: 'us-east-1', ...S3_SECRETS })
      expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2])
      expect(runs[0]!.stdout).toContain('rejected the credentials')
      expectNoSecret(runs)
    })
  })
})

describe('Valkey', () => {
  const { host, port } = valkeyEnv().standalone
  const user = `deployer-${randomBytes(4).toString('hex')}`
  const admin = new Redis({ host, port })
  beforeAll(async () => {
    await admin.call('ACL', 'SETUSER', user, 'on', `>${SECRETS.valkeyPassword}`, '~*', '&*', '+@all')
  })
  afterAll(async () => {
    await admin.call('ACL', 'DELUSER', user)
    admin.disconnect()
  })
  const inUrl = (password: string, at = `${host}:${port}`) => `redis://${user}:${password}@${at}`

  const fromEnv = (password: string) => ({ PUSH_CACHE_VALKEY_USERNAME: user, PUSH_CACHE_VALKEY_PASSWORD: password })

  it('passwords never show, from the environment or the URL, when the commands succeed', async () => {
    const runs = [
      ...(await runEveryCommand(`redis://${host}:${port}`, fromEnv(SECRETS.valkeyPassword))),
      ...(await runEveryCommand(inUrl(SECRETS.valkeyPassword), {})),
    ]
    expect(runs.map((run) => run.code)).toEqual(Array(8).fill(0))
    expectNoSecret(runs)
  })

  it('nor when they fail: a wrong password, from the URL or the environment, or no server', async () => {
    const runs = [
      ...(await runEveryCommand(inUrl(SECRETS.wrongPassword), {})),
      ...(await runEveryCommand(`redis://${host}:${port}`, fromEnv(SECRETS.wrongPassword))),
      ...(await runEveryCommand(inUrl(SECRETS.valkeyPassword, `127.0.0.1:${await closedPort()}`), {})),
    ]
    expect(runs.map((run) => run.code)).toEqual(Array(12).fill(2))
    expectNoSecret(runs)
  })

  it('nor anywhere in the cause chain of an error a plugin throws', async () => {
    const files = await collectFiles(await writeTree(await tempDir(), BUILD))
    const options = resolveOptions({ app: uniqueApp(), store: inUrl(SECRETS.wrongPassword) }, {})
    const error = await pushFiles({ files, options, logger: silentLogger }).catch((thrown: unknown) => thrown)
    const everything = inspect(error, { depth: Number.POSITIVE_INFINITY, showHidden: true })
    expect(everything).toContain('WRONGPASS')
    for (const needle of NEEDLES) expect(everything).not.toContain(needle)
  })
})
