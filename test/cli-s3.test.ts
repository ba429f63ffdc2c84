import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { BUILD, closedPort, deployArgs, ONLY_THE_BUILD, parseReport, readText, runCli, tree, workspaceWithBuild } from './helpers/cli'
import { createBucket, listObjects, putObject, s3CliEnv, s3StoreUrl } from './helpers/s3'

let work: string
let dist: string
let bucket: string
beforeEach(async () => {
  ;({ work, dist } = await workspaceWithBuild())
  bucket = await createBucket()
})

describe('push-cache with the S3 store', () => {
  it('populates data/<app>/** and manifests/<app>/<ts>, lists and pops', async () => {
    const env = s3CliEnv()
    const pushed = await runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket), '--timestamp', '1700000000', '--json'], { env })
    expect(pushed.code, pushed.stderr).toBe(0)
    expect(parseReport(pushed.stdout)).toMatchObject({ ok: true, uploaded: 4, manifestKey: 'manifests/my-app/1700000000' })
    expect((await listObjects(bucket)).map((object) => object.key)).toEqual(
      [...Object.keys(BUILD).map((relpath) => `data/my-app/${relpath}`), 'manifests/my-app/1700000000'].sort(),
    )

    const listed = parseReport((await runCli(['ls', '--app', 'my-app', '--store', s3StoreUrl(bucket), '--json'], { env })).stdout)
    expect(listed.builds).toEqual([expect.objectContaining({ timestamp: 1700000000, files: 4 })])

    const dest = join(work, 'html')
    const popped = await runCli(['pop', dest, '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env })
    expect(popped.code, popped.stderr).toBe(0)
    for (const [relpath, content] of Object.entries(BUILD)) expect(await readText(join(dest, relpath))).toBe(content)
  })

  it('pop refuses a key crafted to escape dest, names it, and writes nothing outside dest', async () => {
    await putObject(bucket, 'data/my-app/index.html', 'ok')
    const crafted = 'data/my-app/../../evil.sh'
    await putObject(bucket, crafted, 'echo pwned')
    expect((await listObjects(bucket)).map((object) => object.key)).toContain(crafted) // the server kept the key as is
    const dest = join(work, 'serve', 'www')
    const result = await runCli(['pop', dest, '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env: s3CliEnv() })
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain(`Refusing key "${crafted}"`)
    expect(await tree(work)).toEqual(ONLY_THE_BUILD)
  })

  it('an unreachable endpoint is bad configuration: exit 2, the store named, nothing written', async () => {
    const result = await runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket)], {
      env: { ...s3CliEnv(), AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${await closedPort()}` },
    })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(
      new RegExp(`Option \`--store\` s3://${bucket} at http://127\\.0\\.0\\.1:\\d+ cannot be reached \\(.*ECONNREFUSED.*\\)\\. Check the host and port`),
    )
    expect(await listObjects(bucket)).toEqual([])
  })

  it('a bucket that does not exist is bad configuration', async () => {
    const result = await runCli(['ls', '--app', 'my-app', '--store', s3StoreUrl(`${bucket}-missing`)], { env: s3CliEnv() })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/does not exist.*Create it/)
  })

  it('the Kubernetes Job in deploy/ is accepted as written (run with --dry-run)', async () => {
    const manifest = await readText('deploy/k8s-job.yaml')
    const args = await deployArgs('k8s-job.yaml', 'push-cache')
    const image = /name: FRONTEND_IMAGE\s+value: (\S+)/.exec(manifest)![1]!
    const store = args[args.indexOf('--store') + 1]!
    expect(args.slice(0, 2)).toEqual(['populate', '/srv/dist'])
    expect(store).toMatch(/^s3:\/\//)
    // Only where it runs changes: the build directory and the bucket of this test.
    const local = args.map((arg) => (arg === '/srv/dist' ? dist : arg === store ? s3StoreUrl(bucket) : arg.replace('$(FRONTEND_IMAGE)', image)))
    const result = await runCli([...local, '--dry-run', '--json'], { env: s3CliEnv() })
    expect(result.code, result.stderr).toBe(0)
    expect(parseReport(result.stdout)).toMatchObject({ ok: true, dryRun: true, uploaded: 4 })
    expect(await listObjects(bucket)).toEqual([])
  })
})

/**
 * moto accepts any credentials unless told otherwise: this file starts its own moto_server and
 * turns on its IAM authentication (`/moto-api/reset-auth`), so a wrong key is refused for real.
 * The shared server is left alone: other test files use it with made-up keys.
 */
const hasMoto = !spawnSync('moto_server', ['--help'], { stdio: 'ignore' }).error
describe.skipIf(!hasMoto)('wrong S3 credentials (needs moto_server on PATH: pip install "moto[server]")', () => {
  let server: ChildProcess | undefined
  let endpoint = ''
  beforeAll(async () => {
    const port = await closedPort()
    endpoint = `http://127.0.0.1:${port}`
    server = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
    for (
      let attempt = 0;
      !(await fetch(endpoint).then(
        () => true,
        () => false,
      ));
      attempt++
    ) {
      if (attempt > 300) throw new Error(`moto_server did not answer on ${endpoint}`)
      await sleep(100)
    }
  })
  afterAll(() => void server?.kill())

  const enforceAuth = (on: boolean) => fetch(`${endpoint}/moto-api/reset-auth`, { method: 'POST', body: on ? '0' : 'inf' })

  it('are bad configuration: exit 2, the fix named, the secret never printed, nothing written', async () => {
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } })
    await client.send(new CreateBucketCommand({ Bucket: 'guarded' }))
    await enforceAuth(true)
    try {
      const env = {
        AWS_ENDPOINT_URL_S3: endpoint,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'AKIAWRONGKEY0000000',
        AWS_SECRET_ACCESS_KEY: 'wrong-s3cret-value',
      }
      const result = await runCli(['populate', dist, '--app', 'my-app', '--store', 's3://guarded'], { env })
      expect(result.code).toBe(2)
      expect(result.stderr).toMatch(
        /Option `--store` s3:\/\/guarded at http:\/\/127\.0\.0\.1:\d+ rejected the credentials \(.*(InvalidAccessKeyId|403).*\)\. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
      )
      expect(result.stderr + result.stdout).not.toContain('wrong-s3cret-value')
    } finally {
      await enforceAuth(false)
    }
    const objects = await client.send(new ListObjectsV2Command({ Bucket: 'guarded' }))
    expect(objects.Contents ?? []).toEqual([])
    client.destroy()
  })
})
