import { describe, expect, it } from 'vitest'
import { describeError, PushCacheError, redact } from '../../src/core/model/errors'
import { MANIFEST_MAX_BYTES, parseManifest } from '../../src/core/model/manifest'
import { assertSafeRelpath } from '../../src/core/model/paths'
import { flatLayout, versionedLayout } from '../../src/core/store/layout'
import { formatAge, parseDuration, parseDurationMs } from '../../src/core/util/duration'
import { resolveOptions } from '../../src/options'

const code = (action: () => unknown) => {
  try {
    action()
  } catch (error) {
    return { code: (error as PushCacheError).code, message: (error as Error).message }
  }
  throw new Error('expected a PushCacheError')
}

describe('resolveOptions', () => {
  it('fills every default', () => {
    const options = resolveOptions({ app: 'inventory' }, {}, () => 1_700_000_000_999)
    expect(options).toMatchObject({
      store: './.push-cache',
      entrypoint: ['fed-mods.json'],
      include: ['**'],
      exclude: [],
      timestamp: 1_700_000_000,
      concurrency: undefined,
      force: false,
      retries: 3,
      prune: false,
      scan: 'outDir',
      watch: false,
      failOnError: true,
      dryRun: false,
      disable: false,
      debug: false,
    })
  })

  it('takes app, store, image and timestamp from the environment', () => {
    const env = { PUSH_CACHE_APP: 'a', PUSH_CACHE_STORE: 's3://b', PUSH_CACHE_IMAGE: 'quay.io/x:1', SOURCE_DATE_EPOCH: '42', BUILD_TIMESTAMP: '43' }
    expect(resolveOptions({}, env)).toMatchObject({ app: 'a', store: 's3://b', image: 'quay.io/x:1', timestamp: 43 })
    expect(resolveOptions({}, { ...env, BUILD_TIMESTAMP: '' }).timestamp).toBe(42)
  })

  it('resolves prune with its defaults', () => {
    expect(resolveOptions({ app: 'a', prune: {} }, {}).prune).toEqual({ olderThanSeconds: 172800, keep: 3 })
  })

  it.each([
    [{}, 'app'],
    [{ app: 'a/b' }, 'app'],
    [{ app: '..' }, 'app'],
    [{ app: 'a:b' }, 'app'],
    [{ app: 'a', concurrency: 0 }, 'concurrency'],
    [{ app: 'a', prune: { olderThan: 'soon' } }, 'prune.olderThan'],
    [{ app: 'a', prune: { keep: 0 } }, 'prune.keep'],
    [{ app: 'a', scan: 'all' as never }, 'scan'],
    [{ app: 'a', announce: { vwatch: 'vwatch:8008' } }, 'announce.vwatch'],
    [{ app: 'a', announce: { vwatch: 'ftp://vwatch:8008' } }, 'announce.vwatch'],
    [{ app: 'a', announce: { name: 'builds//a' } }, 'announce.name'],
    [{ app: 'a', announce: { name: 'builds/../other' } }, 'announce.name'],
    [{ app: 'a', announce: { name: 'my builds' } }, 'announce.name'],
    [{ app: 'a', announce: { channel: '' } }, 'announce.channel'],
    [{ app: 'a', timestamp: Date.now() }, 'timestamp'],
    [{ app: 'a', timestamp: 1e21 }, 'timestamp'],
  ])('rejects %j naming `%s` and the fix', (options, option) => {
    const error = code(() => resolveOptions(options, {}))
    expect(error.code).toBe('INVALID_OPTION')
    expect(error.message).toContain(`\`${option}\``)
  })

  it('announces nothing by default; names a vwatch announce push-cache/<app>, the URL from PUSH_CACHE_ANNOUNCE_VWATCH', () => {
    expect(resolveOptions({ app: 'inventory' }, {}).announce).toEqual({ name: 'push-cache/inventory' })
    const env = { PUSH_CACHE_ANNOUNCE_VWATCH: 'http://vwatch:8008' }
    expect(resolveOptions({ app: 'inventory' }, env).announce).toEqual({ vwatch: 'http://vwatch:8008', name: 'push-cache/inventory' })
    expect(resolveOptions({ app: 'a', announce: { vwatch: 'https://v.example', name: 'team/a:latest', channel: 'builds' } }, env).announce).toEqual({
      vwatch: 'https://v.example',
      name: 'team/a:latest',
      channel: 'builds',
    })
  })

  it('never prints the password of a vwatch URL it rejects', () => {
    expect(code(() => resolveOptions({ app: 'a', announce: { vwatch: 'ftp://deployer:s3cret@vwatch' } }, {})).message).not.toContain('s3cret')
  })

  it('rejects a timestamp env that is not seconds', () => {
    expect(code(() => resolveOptions({ app: 'a' }, { SOURCE_DATE_EPOCH: 'yesterday' })).message).toContain('SOURCE_DATE_EPOCH')
  })

  it('needs no app when disabled', () => {
    expect(resolveOptions({ disable: true }, {}).disable).toBe(true)
  })
})

describe('durations', () => {
  it.each([
    ['90s', 90],
    ['30m', 1800],
    ['48h', 172800],
    ['7d', 604800],
    ['2w', 1209600],
    ['120', 120],
    ['1.5h', 5400],
  ])('%s is %i seconds', (text, seconds) => expect(parseDuration(text)).toBe(seconds))

  it.each([
    ['250ms', 250],
    ['1.5s', 1500],
    ['5m', 300_000],
  ])('%s is %i milliseconds (the watch flags)', (text, ms) => expect(parseDurationMs(text)).toBe(ms))

  it('rejects malformed durations naming the option', () => {
    expect(code(() => parseDuration('48 hours', '--older-than')).message).toMatch(/`--older-than`.*48h/)
  })

  it('formats ages for people', () => {
    expect([formatAge(5), formatAge(125), formatAge(3725), formatAge(2 * 86400 + 7200)]).toEqual(['5s', '2m', '1h 2m', '2d 2h'])
  })
})

describe('manifests', () => {
  it('reads our object, valpop object and the older bare array', () => {
    expect(parseManifest('{"files":["a.js"],"timestamp":5,"image":"x","valpopImage":"v"}', 'k', 9)).toMatchObject({ files: ['a.js'], timestamp: 5, image: 'x' })
    expect(parseManifest('["a.js","b/c.css"]', 'k', 9)).toEqual({ files: ['a.js', 'b/c.css'], timestamp: 9 })
  })

  it.each([
    ['not json', 'it is not JSON'],
    ['{"files":"a"}', '`files` is not a list of paths'],
    ['42', 'it is neither an object nor an array'],
    ['null', 'it is neither an object nor an array'],
    ['{"files":[1]}', '`files` is not a list of paths'],
    ['{"files":["../../other-app/fed-mods.json"]}', '`files` names "../../other-app/fed-mods.json", whose path has an empty, `.` or `..` segment'],
    ['["/etc/passwd"]', '`files` names "/etc/passwd", whose path is absolute'],
    ['{"files":["a.js"],"timestamp":"1"}', 'its `timestamp` "1" is not the 1700000000 of its key'],
    ['{"files":["a.js"],"timestamp":32503680000}', 'its `timestamp` 32503680000 is not the 1700000000 of its key'],
    ['{"files":["a.js"],"image":7}', '`image` is not a string'],
    ['{"files":["a.js"],"entrypoints":"a.js"}', '`entrypoints` is not a list of paths'],
    ['{"files":["a.js"],"entries":{"a.js":{"size":"big"}}}', '`entries` is not a map'],
  ])('refuses %s with MANIFEST_UNREADABLE, saying why', (text, why) => {
    expect(code(() => parseManifest(text, 'manifests/a/1700000000', 1_700_000_000, 1_700_000_000))).toMatchObject({
      code: 'MANIFEST_UNREADABLE',
      message: expect.stringContaining(`Manifest manifests/a/1700000000 cannot be read: ${why}`),
    })
  })

  it('refuses a build dated more than a day ahead of the clock, and more than 128 MiB', () => {
    const now = 1_700_000_000
    expect(parseManifest('["a.js"]', 'k', now + 86_400, now).files).toEqual(['a.js'])
    expect(code(() => parseManifest('["a.js"]', 'k', 32_503_680_000, now)).message).toContain('it is dated 3000-01-01T00:00:00.000Z, ahead of')
    // Brackets inside strings, escaped quotes included, do not count as nesting.
    expect(parseManifest(JSON.stringify({ files: ['a"[[[[.js'], note: '['.repeat(100) }), 'k', now, now).files).toEqual(['a"[[[[.js'])
    const started = Date.now()
    expect(code(() => parseManifest(`${'['.repeat(5_000_000)}${']'.repeat(5_000_000)}`, 'k', now, now)).message).toContain('it nests more than 64 levels deep')
    expect(Date.now() - started).toBeLessThan(1000)
    const huge = JSON.stringify({ files: ['a.js'], padding: 'x'.repeat(MANIFEST_MAX_BYTES) })
    expect(code(() => parseManifest(huge, 'k', now, now)).message).toContain('more than the 128.0 MiB a manifest may')
  })
})

describe('keys', () => {
  it('parses versioned keys whose relpath holds `:`', () => {
    expect(versionedLayout.parseDataKey('app', 'data:app:17:a:b:c.js')).toEqual({ timestamp: 17, relpath: 'a:b:c.js' })
    expect(versionedLayout.parseDataKey('app', 'data:app:x:a.js')).toBeUndefined()
    expect(versionedLayout.parseDataKey('app', 'data:app-2:1:a.js')).toBeUndefined()
    expect(flatLayout.parseManifestKey('app', 'manifests/app/1700000000')).toBe(1700000000)
    expect(flatLayout.parseManifestKey('app', 'manifests/app/latest')).toBeUndefined()
  })

  it.each(['../x', 'a/../../x', '/etc/passwd', 'a\\b', 'a\0b', 'a\nb', 'a\u001b[2Jb', 'a\u009bb', 'C:/x', 'C:', 'a//b', './a', ''])(
    'refuses the unsafe relpath %j',
    (relpath) => {
      expect(code(() => assertSafeRelpath(relpath, `data/app/${relpath}`))).toMatchObject({ code: 'UNSAFE_PATH' })
    },
  )

  it('accepts spaces, non-ASCII, dots and colons inside names', () => {
    expect(assertSafeRelpath('img/logo café..svg')).toBe('img/logo café..svg')
    expect(assertSafeRelpath('x:y.js')).toBe('x:y.js')
  })
})

describe('error descriptions', () => {
  it('name the reason Node and the AWS SDK give', () => {
    const sdkError = Object.assign(new Error('Please reduce your request rate.'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } })
    expect(describeError(sdkError)).toBe('Please reduce your request rate. (SlowDown, HTTP 503)')
    expect(describeError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toBe('connect ECONNREFUSED 127.0.0.1:1')
  })
})

describe('secrets', () => {
  it('never prints a password or key', () => {
    expect(redact('cannot reach redis://admin:s3cret@10.0.0.1:6379/0')).toBe('cannot reach redis://admin:***@10.0.0.1:6379/0')
    expect(redact('https://AKIA123@host/x?X-Amz-Signature=abc&y=1')).toBe('https://***@host/x?X-Amz-Signature=***&y=1')
    expect(new PushCacheError('UPLOAD_FAILED', 'valkey://:pw@h').message).toBe('valkey://:***@h')
    // Passwords pasted unencoded: the userinfo runs to the last `@` of the word.
    expect(redact('redis://deployer:p@ss/w:rd@cache:6379/1 failed')).toBe('redis://deployer:***@cache:6379/1 failed')
    expect(redact('rediss://tok@en@h and s3://bucket/root')).toBe('rediss://***@h and s3://bucket/root')
    expect(describeError(new Error('auth failed for rediss://u:pw@h'))).not.toContain('pw')
  })
})
