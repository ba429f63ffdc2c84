import { join } from 'node:path'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { BUILD, closedPort, deployArgs, ONLY_THE_BUILD, parseReport, readText, runCli, tree, workspaceWithBuild } from './helpers/cli'
import { type AuthMoto, hasMoto, startAuthMoto } from './helpers/moto'
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

describe.skipIf(!hasMoto)('wrong S3 credentials (needs moto: pip install "moto[server]")', () => {
  let moto: AuthMoto
  beforeAll(async () => {
    moto = await startAuthMoto()
    await moto.createBucket('guarded')
    await moto.enforce()
  })
  afterAll(() => moto?.stop())

  it('are bad configuration: exit 2, the fix named, the secret never printed, nothing written', async () => {
    const env = {
      AWS_ENDPOINT_URL_S3: moto.endpoint,
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
    const objects = await moto.admin.send(new ListObjectsV2Command({ Bucket: 'guarded' }))
    expect(objects.Contents ?? []).toEqual([])
  })
})
