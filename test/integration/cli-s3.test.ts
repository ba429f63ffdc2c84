import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { beforeEach, describe, expect, it } from 'vitest'
import { BUILD, closedPort, deployArgs, ONLY_THE_BUILD, parseReport, readText, runCli, tree, workspaceWithBuild } from '../helpers/cli'
import { guardedMoto, hasMoto } from '../helpers/moto'
import { clearFaults, createBucket, injectFault, listObjects, putObject, requestLog, s3CliEnv, s3StoreUrl } from '../helpers/s3'

const run = promisify(execFile)

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

  it('a 5xx on every attempt of the first request (the writer lock) names the store and the request: exit 2, nothing written', async () => {
    await injectFault({ bucket, method: 'PUT', status: 500, code: 'InternalError' })
    try {
      const result = await runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket), '--retries', '1', '--json'], { env: s3CliEnv() })
      expect(result.code).toBe(2)
      expect(result.stderr).toMatch(new RegExp(`s3://${bucket} .*failed the first request \\(put locks/my-app/writer\\), every attempt: .*InternalError`))
      expect(result.stderr).not.toContain('Run again with PUSH_CACHE_DEBUG=1')
      expect(await listObjects(bucket)).toEqual([])
    } finally {
      await clearFaults()
    }
  })

  it('an S3 endpoint that is not a URL is named as the option: exit 2', async () => {
    const result = await runCli(['ls', '--app', 'my-app', '--store', s3StoreUrl(bucket), '--s3-endpoint', 'http://user:pa/ss@127.0.0.1:9'], { env: s3CliEnv() })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/Option `s3.endpoint` is not a URL \(http:\/\/user:\*\*\*@127\.0\.0\.1:9\)/)
  })

  it('a bucket in another region is followed there: the redirected request is signed for the region S3 names', async () => {
    await injectFault({ bucket, method: 'PUT', status: 301, code: 'PermanentRedirect', bucketRegion: 'eu-central-1', times: 1 })
    try {
      const result = await runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env: s3CliEnv() })
      expect(result.code, result.stderr).toBe(0)
    } finally {
      await clearFaults()
    }
    expect((await requestLog(bucket)).map((request) => request.region)).toContain('eu-central-1')
    expect(await listObjects(bucket)).toHaveLength(Object.keys(BUILD).length + 1) // and the manifest
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
    const result = await runCli(['ls', '--app', 'my-app', '--store', s3StoreUrl(`${bucket}-missing`), '--json'], { env: s3CliEnv() })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/does not exist.*Create it/)
    expect(result.stderr.match(/Create/g)).toHaveLength(1)
    // The store answered, and said no: not an unreachable store.
    expect(parseReport(result.stdout)).toMatchObject({ errors: [{ code: 'INVALID_OPTION' }] })
  })

  it('takes the region from the AWS profile when none is set, not a default of ours', async () => {
    const { AWS_REGION: _, AWS_ACCESS_KEY_ID: key, AWS_SECRET_ACCESS_KEY: secret, ...env } = s3CliEnv()
    const config = join(work, 'aws-config')
    const credentials = join(work, 'aws-credentials')
    await writeFile(config, '[profile eu]\nregion = eu-west-1\n')
    await writeFile(credentials, `[eu]\naws_access_key_id = ${key}\naws_secret_access_key = ${secret}\n`)
    const profile = { ...env, AWS_CONFIG_FILE: config, AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_PROFILE: 'eu' }
    const pushed = await runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env: profile })
    expect(pushed.code, pushed.stderr).toBe(0)
    expect(new Set((await requestLog(bucket)).map((request) => request.region))).toEqual(new Set(['eu-west-1']))
  })

  it('signs for us-east-1 at a custom endpoint when no region is configured anywhere; says where to set one for AWS itself', async () => {
    const { AWS_REGION: _, AWS_ENDPOINT_URL_S3: endpoint, ...env } = s3CliEnv()
    const nothing = { ...env, AWS_CONFIG_FILE: join(work, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(work, 'none') }
    const pushed = await runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env: { ...nothing, AWS_ENDPOINT_URL_S3: endpoint } })
    expect(pushed.code, pushed.stderr).toBe(0)
    expect(new Set((await requestLog(bucket)).map((request) => request.region))).toEqual(new Set(['us-east-1']))

    const result = await runCli(['ls', '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env: nothing })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('Option `s3.region` is not set, and the AWS SDK found none')
  })

  // The SDK's notice says its releases after January 2027 need Node 22; this package pins its SDK.
  it.skipIf(Number(process.versions.node.split('.')[0]) >= 22)(
    "prints no AWS SDK notice about Node versions, and leaves that notice to the build's own SDK clients",
    async () => {
      const env = { ...s3CliEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: undefined }
      const result = await runCli(['ls', '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env })
      expect(result.code, result.stderr).toBe(0)
      expect(result.stderr).not.toContain('NodeVersionSupportWarning')

      // In one process, as inside a build: our store's client first, then the user's own.
      const script = `
        import { S3Client } from '@aws-sdk/client-s3'
        import { createStore } from './dist/index.js'
        const store = await createStore(${JSON.stringify(s3StoreUrl(bucket))}, { s3: {}, valkey: {} })
        for await (const _ of store.list('manifests/')) break
        await store.close()
        console.error('-- the build now builds its own client --')
        new S3Client({ region: 'us-east-1' }).destroy()`
      const { stderr } = await run(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH, ...env } as NodeJS.ProcessEnv })
      const [ours, theirs] = stderr.split('-- the build now builds its own client --')
      expect(ours).not.toContain('NodeVersionSupportWarning')
      expect(theirs).toContain('NodeVersionSupportWarning')
    },
  )

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
  const guarded = guardedMoto()

  it('are bad configuration: exit 2, the fix named, the secret never printed, nothing written', async () => {
    const env = {
      AWS_ENDPOINT_URL_S3: guarded.moto.endpoint,
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
    const objects = await guarded.moto.admin.send(new ListObjectsV2Command({ Bucket: 'guarded' }))
    expect(objects.Contents ?? []).toEqual([])
  })
})
