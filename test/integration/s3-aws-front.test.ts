import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeEach, describe, expect, inject, it } from 'vitest'
import { awsFront } from '../helpers/aws-front'
import { BUILD, runCli, workspaceWithBuild } from '../helpers/cli'
import { readTree, tempDir } from '../helpers/fs'
import { createBucket, getObject, listObjects, s3CliEnv, s3StoreUrl } from '../helpers/s3'

const aws = awsFront(() => inject('s3').upstream)

/** What a new user on a CI runner sets: keys, a region, a corporate proxy; no endpoint. */
function awsEnv(extra: Record<string, string> = {}): Record<string, string> {
  const { AWS_ENDPOINT_URL_S3: _, ...keys } = s3CliEnv()
  return {
    ...keys,
    AWS_REGION: 'us-east-1',
    HTTPS_PROXY: aws.front.proxy,
    NODE_EXTRA_CA_CERTS: aws.front.caFile,
    // Nothing of the machine's AWS setup: the tests say what is configured.
    AWS_CONFIG_FILE: '/nonexistent/config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
    ...extra,
  }
}

/** An ~/.aws/config holding `text`. */
async function awsConfig(text: string): Promise<string> {
  const file = join(await tempDir(), 'config')
  await writeFile(file, text)
  return file
}

let dist: string
let bucket: string
beforeEach(async () => {
  aws.front.reset()
  ;({ dist } = await workspaceWithBuild())
  bucket = await createBucket()
})

const populate = (env: Record<string, string>, flags: readonly string[] = []) =>
  runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket), ...flags], { env })
const landed = async () => (await listObjects(bucket)).map((object) => object.key).filter((key) => key.startsWith('data/'))
const ALL_DATA = Object.keys(BUILD)
  .map((relpath) => `data/my-app/${relpath}`)
  .sort()
const uploadsOf = (key: string) => aws.front.requests.filter((request) => request.method === 'PUT' && request.key === key)

describe('S3 as AWS answers it, down the real AWS path: no endpoint, virtual-hosted HTTPS', () => {
  it('goes through HTTPS_PROXY to <bucket>.s3.<region>.amazonaws.com, as the aws CLI does', async () => {
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    expect(aws.front.tunnels).toContain(`${bucket}.s3.us-east-1.amazonaws.com:443`)
    expect(new Set(aws.front.requests.map((request) => request.host))).toEqual(new Set([`${bucket}.s3.us-east-1.amazonaws.com`]))
    expect(await landed()).toEqual(ALL_DATA)

    const dest = join(await tempDir(), 'www')
    const popped = await runCli(['pop', dest, '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env: awsEnv() })
    expect(popped.code, popped.stderr).toBe(0)
    expect(await readTree(dest)).toEqual(BUILD)
  })

  it('takes FIPS and dual-stack endpoints from AWS_USE_FIPS_ENDPOINT and AWS_USE_DUALSTACK_ENDPOINT', async () => {
    const result = await populate(awsEnv({ AWS_USE_FIPS_ENDPOINT: 'true', AWS_USE_DUALSTACK_ENDPOINT: 'true' }))
    expect(result.code, result.stderr).toBe(0)
    expect(new Set(aws.front.tunnels)).toEqual(new Set([`${bucket}.s3-fips.dualstack.us-east-1.amazonaws.com:443`]))
    expect(await landed()).toEqual(ALL_DATA)
  })

  it('leaves hosts NO_PROXY names out of the proxy', async () => {
    const result = await populate(awsEnv({ NO_PROXY: '.amazonaws.com', PUSH_CACHE_CONNECT_TIMEOUT: '1000' }))
    expect(result.code).not.toBe(0)
    expect(aws.front.tunnels).toEqual([])
  })

  it('retries a PUT that S3 answered 400 RequestTimeout, as it does under load', async () => {
    aws.front.fault({ method: 'PUT', key: /index\.html$/, status: 400, code: 'RequestTimeout', times: 1 })
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    expect(uploadsOf('data/my-app/index.html').map((request) => request.status)).toEqual([400, 200])
    expect(await landed()).toEqual(ALL_DATA)
  })

  it('corrects a clock 20 minutes behind from S3 Date and goes on; never blames the credentials', async () => {
    aws.front.skewClock(20 * 60_000)
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    expect(result.stderr).not.toMatch(/credentials/i)
    expect(aws.front.requests[0]?.status).toBe(403) // RequestTimeTooSkewed, once
    expect(aws.front.requests.filter((request) => request.status === 403)).toHaveLength(1)
    expect(await landed()).toEqual(ALL_DATA)
  })

  it('with no retry allowed, a skewed clock fails saying so, not blaming the credentials', async () => {
    aws.front.skewClock(20 * 60_000)
    const result = await runCli(['populate', dist, '--app', 'my-app', '--store', s3StoreUrl(bucket), '--retries', '0'], { env: awsEnv() })
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain("says this machine's clock is off")
    expect(result.stderr).not.toMatch(/AWS_ACCESS_KEY_ID/)
  })

  it('follows a bucket that lives in another region (301 with x-amz-bucket-region)', async () => {
    aws.front.placeBucket(bucket, 'eu-west-1')
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    const uploads = aws.front.requests.filter((request) => request.status === 200 && request.method === 'PUT')
    expect(new Set(uploads.map((request) => `${request.host} ${request.region}`))).toEqual(new Set([`${bucket}.s3.eu-west-1.amazonaws.com eu-west-1`]))
    expect(await landed()).toEqual(ALL_DATA)
  })

  it('asks the wrong region once: many requests at once to a bucket elsewhere all go to its region after the first 301', async () => {
    aws.front.placeBucket(bucket, 'eu-west-1')
    const many = Object.fromEntries(Array.from({ length: 60 }, (_, index) => [`many/file-${index}.txt`, `file ${index}\n`]))
    await mkdir(join(dist, 'many'))
    for (const [relpath, text] of Object.entries(many)) await writeFile(join(dist, relpath), text)
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    const dest = join(await tempDir(), 'www')
    const popped = await runCli(['pop', dest, '--app', 'my-app', '--store', s3StoreUrl(bucket)], { env: awsEnv() })
    expect(popped.code, popped.stderr).toBe(0)
    expect(await readTree(dest)).toEqual({ ...BUILD, ...many })
    // One redirect per run (populate, pop); the SDK alone follows one per request.
    expect(aws.front.requests.filter((request) => request.status === 301)).toHaveLength(2)
    expect(new Set(aws.front.requests.filter((request) => request.status !== 301).map((request) => request.region))).toEqual(new Set(['eu-west-1']))
  })

  it('takes the region of the AWS profile when AWS_REGION is set but blank', async () => {
    const result = await populate(awsEnv({ AWS_REGION: '', AWS_CONFIG_FILE: await awsConfig('[default]\nregion = eu-west-1\n') }))
    expect(result.code, result.stderr).toBe(0)
    expect(new Set(aws.front.requests.map((request) => request.region))).toEqual(new Set(['eu-west-1']))
  })

  it('sends a part S3 failed again on its own, within the one multipart upload', async () => {
    const large = randomBytes(9 * 1024 * 1024)
    await writeFile(join(dist, 'big.bin'), large)
    aws.front.fault({ method: 'PUT', key: /big\.bin$/, query: /partNumber=2/, status: 500, code: 'InternalError', times: 1 })
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    const requests = aws.front.requests.filter((request) => request.key === 'data/my-app/big.bin')
    expect(requests.filter((request) => request.method === 'POST' && request.query.startsWith('uploads'))).toHaveLength(1)
    expect(requests.filter((request) => request.method === 'PUT').map((request) => [/partNumber=(\d)/.exec(request.query)?.[1], request.status])).toEqual(
      expect.arrayContaining([
        ['1', 200],
        ['2', 500],
        ['2', 200],
      ]),
    )
    expect((await getObject(bucket, 'data/my-app/big.bin'))?.body.equals(large)).toBe(true)
  })

  it.each([
    ['its CRC32', [], 'x-amz-checksum-crc32'],
    ['its Content-MD5 with --s3-checksums when_required', ['--s3-checksums', 'when_required'], 'content-md5'],
  ] as const)('sends a part again when a byte flipped on the way: %s makes S3 refuse it, and the stored bytes are the file', async (_, flags, header) => {
    const large = randomBytes(17 * 1024 * 1024)
    await writeFile(join(dist, 'big.bin'), large)
    aws.front.flipByte(/big\.bin$/)
    const result = await populate(awsEnv(), flags)
    expect(result.code, result.stderr).toBe(0)
    const parts = uploadsOf('data/my-app/big.bin')
    expect(parts.map((request) => request.checksums)).toEqual(parts.map(() => [header]))
    expect(parts.filter((request) => request.status === 400)).toHaveLength(1)
    expect(parts.filter((request) => request.status === 200)).toHaveLength(3)
    expect((await getObject(bucket, 'data/my-app/big.bin'))?.body.equals(large)).toBe(true)
  })

  it('sends bodies as UNSIGNED-PAYLOAD over HTTPS: no SHA-256 pass over the build, TLS and the signed checksums guard them', async () => {
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    const puts = aws.front.requests.filter((request) => request.method === 'PUT')
    expect(puts.length).toBeGreaterThan(0)
    expect(new Set(puts.map((request) => request.payloadHash))).toEqual(new Set(['UNSIGNED-PAYLOAD']))
  })

  it('sends an upload again when a byte flipped on the way: its Content-MD5 makes S3 refuse it, and the stored bytes are the build', async () => {
    aws.front.flipByte(/main\.1a2b3c4d\.js$/)
    const result = await populate(awsEnv())
    expect(result.code, result.stderr).toBe(0)
    expect(uploadsOf('data/my-app/js/main.1a2b3c4d.js').map((request) => request.status)).toEqual([400, 200])
    expect((await getObject(bucket, 'data/my-app/js/main.1a2b3c4d.js'))?.body.toString()).toBe(BUILD['js/main.1a2b3c4d.js'])
  })
})

describe('S3-compatible servers configured the way the aws CLI is', () => {
  it('uses endpoint_url from the AWS profile (how MinIO users set up the CLI), path style', async () => {
    const { AWS_ENDPOINT_URL_S3: endpoint, ...keys } = s3CliEnv()
    const config = await awsConfig(`[default]\nregion = us-east-1\nendpoint_url = ${endpoint}\n`)
    const result = await populate({ ...keys, AWS_REGION: '', AWS_CONFIG_FILE: config, AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials' })
    expect(result.code, result.stderr).toBe(0)
    expect(await landed()).toEqual(ALL_DATA)
  })
})
