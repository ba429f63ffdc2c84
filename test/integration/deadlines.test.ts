import { join } from 'node:path'
import { describe, expect, inject, it } from 'vitest'
import { PushCacheError } from '../../src/core/model/errors'
import { resolveOptions } from '../../src/options'
import { runCli, tree, workspaceWithBuild } from '../helpers/cli'
import { startFaultProxy, unansweredPort } from '../helpers/fault-proxy'
import { QUICK, stepBoundMs } from '../helpers/faults'
import { createBucket, listObjects, s3CliEnv, s3StoreUrl } from '../helpers/s3'
import { appKeys, rawClient, uniqueApp, valkeyEnv } from '../helpers/valkey'

/** Starting node and loading the AWS SDK on a busy 2-core machine, on top of the bound itself. */
const CLI_SLACK_MS = 6000
const QUICK_FLAGS = ['--connect-timeout', String(QUICK.connectTimeout), '--request-timeout', String(QUICK.requestTimeout), '--retries', String(QUICK.retries)]

/** The CLI's S3 credentials, from the environment as a user sets them; no endpoint: each test names its own. */
function s3Credentials(): Record<string, string> {
  const { AWS_ENDPOINT_URL_S3: _, ...credentials } = s3CliEnv()
  return credentials
}

/** Every command, as a user runs it against `store` (`dist` and `dest` inside `work`). */
/** Each command, and its first S3 request: the writer lock of a command that writes, else a listing. */
const COMMANDS: [string, (paths: { dist: string; dest: string }) => string[], string][] = [
  ['populate', ({ dist }) => ['populate', dist], 'PUT /{bucket}/locks/shop/writer'],
  ['pop', ({ dest }) => ['pop', dest], 'GET /{bucket}/'],
  ['prune', () => ['prune', '--older-than', '1s'], 'PUT /{bucket}/locks/shop/writer'],
  ['ls', () => ['ls'], 'GET /{bucket}/'],
]

const upstream = new URL(inject('s3').upstream)
const s3Proxy = await startFaultProxy({ host: upstream.hostname, port: Number(upstream.port) })
const valkeyProxy = await startFaultProxy(valkeyEnv().standalone)
s3Proxy.fault({ kind: 'stall' })
valkeyProxy.fault({ kind: 'stall' })

async function timedCli(args: string[], env: Record<string, string> = {}) {
  const started = Date.now()
  const result = await runCli(args, { env })
  return { ...result, ms: Date.now() - started }
}

describe('every command fails within the bound when the store accepts connections and never answers', () => {
  const bound = stepBoundMs(QUICK) + CLI_SLACK_MS

  describe('S3', () => {
    it.each(COMMANDS)('%s', async (_, command, firstRequest) => {
      const { work, dist } = await workspaceWithBuild()
      const bucket = await createBucket()
      const endpoint = `http://127.0.0.1:${s3Proxy.port}`
      const args = [...command({ dist, dest: join(work, 'www') }), '--app', 'shop', '--store', s3StoreUrl(bucket), '--s3-endpoint', endpoint, ...QUICK_FLAGS]
      const result = await timedCli(args, s3Credentials())

      expect(result.code, result.stderr).toBe(2)
      expect(result.stderr).toContain(
        `s3://${bucket} at ${endpoint} timed out: ${firstRequest.replace('{bucket}', bucket)} got no complete answer within 500 ms`,
      )
      expect(result.stderr).toContain('raise `requestTimeout` (--request-timeout) if it is only slow')
      expect(result.ms).toBeLessThan(bound)
      expect(await listObjects(bucket)).toEqual([])
      expect((await tree(work)).filter((path) => !path.startsWith('dist/'))).toEqual([])
    })
  })

  describe('Valkey', () => {
    const valkey = rawClient()

    it.each(COMMANDS)('%s', async (_, command) => {
      const { work, dist } = await workspaceWithBuild()
      const app = uniqueApp()
      const args = [...command({ dist, dest: join(work, 'www') }), '--app', app, '--store', `valkey://127.0.0.1:${valkeyProxy.port}`, ...QUICK_FLAGS]
      const result = await timedCli(args)

      expect(result.code, result.stderr).toBe(2)
      expect(result.stderr).toContain(`valkey://127.0.0.1:${valkeyProxy.port} timed out: the server was not ready for commands within 300 ms`)
      expect(result.stderr).toContain('raise `connectTimeout` (--connect-timeout) if it is only slow')
      expect(result.ms).toBeLessThan(bound)
      expect(await appKeys(valkey, app)).toEqual([])
      expect((await tree(work)).filter((path) => !path.startsWith('dist/'))).toEqual([])
    })
  })
})

describe('a connection that is never accepted times out after connectTimeout', () => {
  const bound = stepBoundMs({ ...QUICK, requestTimeout: QUICK.connectTimeout }) + CLI_SLACK_MS

  it.each([
    [
      'S3',
      (port: number) => ['--store', 's3://bucket', '--s3-endpoint', `http://127.0.0.1:${port}`],
      /s3:\/\/bucket at http:\/\/127\.0\.0\.1:\d+ timed out: no connection was established within 300 ms/,
    ],
    [
      'Valkey',
      (port: number) => ['--store', `valkey://127.0.0.1:${port}`],
      /valkey:\/\/127\.0\.0\.1:\d+ timed out: (no connection was established|the server was not ready for commands) within 300 ms/,
    ],
  ])('%s', async (_, store, message) => {
    const result = await timedCli(['ls', '--app', 'shop', ...store(await unansweredPort()), ...QUICK_FLAGS], s3Credentials())
    expect(result.code, result.stderr).toBe(2)
    expect(result.stderr).toMatch(message)
    expect(result.stderr).toContain('raise `connectTimeout` (--connect-timeout)')
    expect(result.ms).toBeLessThan(bound)
  })
})

describe('timeouts are options, environment variables and flags', () => {
  it('defaults to seconds, not minutes; the option wins over the environment', () => {
    expect(resolveOptions({ app: 'a' }, {})).toMatchObject({ connectTimeout: 5000, requestTimeout: 30_000, retries: 3 })
    const env = { PUSH_CACHE_CONNECT_TIMEOUT: '1500', PUSH_CACHE_REQUEST_TIMEOUT: '8000' }
    expect(resolveOptions({ app: 'a' }, env)).toMatchObject({ connectTimeout: 1500, requestTimeout: 8000 })
    expect(resolveOptions({ app: 'a', requestTimeout: 9000 }, env)).toMatchObject({ connectTimeout: 1500, requestTimeout: 9000 })
  })

  it.each([
    [{ requestTimeout: 0 }, {}, /Option `requestTimeout` is 0\. Use a whole number of at least 1/],
    [{ connectTimeout: 2.5 }, {}, /Option `connectTimeout` is 2\.5/],
    [{}, { PUSH_CACHE_REQUEST_TIMEOUT: '30s' }, /Option `PUSH_CACHE_REQUEST_TIMEOUT` is "30s", not a whole number of milliseconds/],
  ])('rejects %j %j, naming the option', (options, env, message) => {
    expect(() => resolveOptions({ app: 'a', ...options }, env)).toThrow(PushCacheError)
    expect(() => resolveOptions({ app: 'a', ...options }, env)).toThrow(message)
  })

  it('a flag that is not a number of milliseconds is a usage error that names it', async () => {
    const result = await runCli(['ls', '--app', 'shop', '--store', './nowhere', '--request-timeout', '2s'])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/Option `--request-timeout` is "2s"/)
  })
})
