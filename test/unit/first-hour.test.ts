import { describe, expect, it } from 'vitest'
import { redact } from '../../src/core/model/errors'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { createLogger } from '../../src/core/util/logger'
import { resolveOptions } from '../../src/options'
import { checkStore, storeKind } from '../../src/stores'
import { createLocalStore } from '../../src/stores/local'
import { tempDir, writeTree } from '../helpers/fs'

describe('mistyped store URLs', () => {
  it('hide the password in every form of userinfo', () => {
    expect(redact('Option `--vwatch` is "http//user:PW@host".')).toBe('Option `--vwatch` is "http//user:***@host".')
    expect(redact('(redis:/:PW@host:6379)')).toBe('(redis:/:***@host:6379)')
    expect(redact('(valkey:PW@host)')).toBe('(valkey:***@host)')
    expect(redact('to /tmp/redis//:PW@host:6379')).toBe('to /tmp/redis//:***@host:6379')
    expect(redact('HTTP 400 {"headers":{"Authorization":"Basic dXNlcjpQVw=="}}')).toBe('HTTP 400 {"headers":{"Authorization":"Basic ***"}}')
    expect(redact('mail bob@example.com at 10:30')).toBe('mail bob@example.com at 10:30')
  })

  it.each(['s3:/bucket', 's3:bucket', 'redis//:PW@host:6379', 'valkey:PW@host', 'redis:/:PW@host:6379', 'rediss:host'])(
    'refuse %s as malformed, never taking it for a path',
    (url) => {
      expect(() => storeKind(url)).toThrow(/`store` is a malformed URL .* Use s3:\/\/bucket/)
      expect(() => storeKind(url)).not.toThrow(/PW/)
    },
  )

  it('still take paths and well-formed URLs', () => {
    expect(storeKind('./.push-cache')).toBe('local')
    expect(storeKind('C:\\cache')).toBe('local')
    expect(storeKind('file:./dir')).toBe('local')
    expect(storeKind('s3://bucket/root')).toBe('s3')
    expect(storeKind('rediss+cluster://h:1,h:2')).toBe('valkey')
  })
})

describe('inputs refused when the options load', () => {
  const base = { app: 'shop', store: './cache' }
  it('cap the concurrency below what ends in EMFILE', () => {
    expect(() => resolveOptions({ ...base, concurrency: 100_000 }, {})).toThrow(/`concurrency` is 100000\. Use a whole number of at least 1 and at most 1024/)
    expect(resolveOptions({ ...base, concurrency: 1024 }, {}).concurrency).toBe(1024)
  })

  it('refuse an image with a line break, which would break `ls`', () => {
    expect(() => resolveOptions({ ...base, image: 'quay.io/a:1\nINJECTED' }, {})).toThrow(/`image` is .* line break/)
    expect(() => resolveOptions(base, { PUSH_CACHE_IMAGE: 'a\tb' })).toThrow(/`image`/)
  })

  it('refuse an app name too long for a file name', () => {
    expect(() => resolveOptions({ ...base, app: 'a'.repeat(300) }, {})).toThrow(/`app` is 300 characters long\. Use at most 128/)
  })
})

describe('store settings checked before any network call', () => {
  const nowhere = { AWS_CONFIG_FILE: '/nonexistent/config', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials', AWS_EC2_METADATA_DISABLED: 'true' }
  const s3 = (env: NodeJS.ProcessEnv) => () => checkStore({ store: 's3://bucket', s3: {} }, env)

  it('refuse S3 when the credential chain has nothing to try', () => {
    expect(s3(nowhere)).toThrow(/`store` s3:\/\/bucket is an S3 store, and the AWS SDK has no credentials to find\. Set AWS_ACCESS_KEY_ID/)
  })

  it.each([
    { AWS_ACCESS_KEY_ID: 'AKIA' },
    { AWS_PROFILE: 'ci' },
    { AWS_WEB_IDENTITY_TOKEN_FILE: '/var/run/token' },
    { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2/creds' },
  ])('take S3 when the chain has a source: %o', (source) => expect(s3({ ...nowhere, ...source })).not.toThrow())

  it('refuse a channel on a store without channels', () => {
    expect(() => checkStore({ store: './cache', s3: {}, announce: { name: 'x', channel: 'builds' } })).toThrow(/`announce.channel` needs a store with channels/)
  })
})

describe('debug logging', () => {
  it("says the plan's decision for every file, with its reason, also when nothing is written", async () => {
    const storeRoot = await tempDir()
    const outDir = await writeTree(await tempDir(), { 'fed-mods.json': '{}', 'main.1a2b3c4d.js': 'export {}', 'notes.txt': 'x' })
    const push = async (timestamp: number) => {
      const lines: string[] = []
      const logger = createLogger('', true, (line) => lines.push(line))
      const options = resolveOptions({ app: 'shop', timestamp, exclude: ['*.txt'] }, {})
      await populate({ store: createLocalStore(storeRoot), options, files: await collectFiles(outDir), logger })
      return lines.filter((line) => line.includes('debug: plan:'))
    }
    expect(await push(1700000000)).toEqual([
      '[push-cache] debug: plan: notes.txt is left out by include/exclude',
      '[push-cache] debug: plan: main.1a2b3c4d.js is new (the store holds no data/shop/main.1a2b3c4d.js): write',
      '[push-cache] debug: plan: fed-mods.json is new (the store holds no data/shop/fed-mods.json): write',
    ])
    await writeTree(outDir, { 'fed-mods.json': '{"changed":1}' })
    expect(await push(1700000001)).toEqual([
      '[push-cache] debug: plan: notes.txt is left out by include/exclude',
      '[push-cache] debug: plan: main.1a2b3c4d.js is unchanged (same MD5 and headers as data/shop/main.1a2b3c4d.js): skip',
      '[push-cache] debug: plan: fed-mods.json changed (md5, size differ): write',
    ])
  })
})

describe('the local store keeps every name a build has', () => {
  it('takes a 250-byte file name and a file that ends in .tmp, and lists both', async () => {
    const store = createLocalStore(await tempDir())
    const long = `data/shop/${'n'.repeat(246)}.js`
    for (const key of [long, 'data/shop/cache.tmp']) await store.put(key, Buffer.from('x'))
    const listed: string[] = []
    for await (const entry of store.list('data/shop/')) listed.push(entry.key)
    expect(listed.sort()).toEqual(['data/shop/cache.tmp', long])
    const everything: string[] = []
    for await (const entry of store.list('')) everything.push(entry.key)
    expect(everything).toHaveLength(2)
  })
})

describe('a file of the build that cannot be read', () => {
  it('is blamed on the build, naming the file, not on the store', async () => {
    const storeRoot = await tempDir()
    const outDir = await writeTree(await tempDir(), { 'a.js': 'a', 'b.js': 'b' })
    const store = createLocalStore(storeRoot)
    const options = (timestamp: number) => resolveOptions({ app: 'shop', timestamp }, {})
    await populate({ store, options: options(1700000000), files: await collectFiles(outDir) })
    // Gone between the listing of the build and its hashing (or unreadable: EACCES reads the same way).
    const files = (await collectFiles(outDir)).map((file) => (file.relpath === 'b.js' ? { ...file, path: `${file.path}.gone` } : file))
    await expect(populate({ store, options: options(1700000001), files })).rejects.toThrow(
      /^Could not read \/.*b\.js\.gone of the build \(ENOENT\)\. Nothing of build 1700000001 was written\.$/,
    )
  })
})
