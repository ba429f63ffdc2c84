/**
 * What each command needs on each store, and nothing more: the one list the least-privilege tests
 * build their IAM policies and ACL users from, and the README's table (the test checks that the
 * README shows `permissionsTable()` as it is). `<app>` stands for the app's name, `<channel>` for
 * `announce.channel`. The app's writer lock (`locks/<app>/writer`; `lease:<app>:writer` on Valkey,
 * its one key there) is how a push and a prune of the same app exclude each other; `locks/<app>/`
 * also holds the pending records of flat stores.
 */
export const COMMANDS = ['populate', 'pop', 'prune', 'ls'] as const
export type Command = (typeof COMMANDS)[number]

/** S3 actions, each with what it applies to: key patterns, or for `s3:ListBucket` the prefixes listed. */
const S3_PERMISSIONS: Record<Command, Record<string, readonly string[]>> = {
  populate: {
    's3:ListBucket': ['data/<app>/', 'manifests/<app>/', 'locks/<app>/'],
    's3:GetObject': ['manifests/<app>/*', 'locks/<app>/*'],
    's3:PutObject': ['data/<app>/*', 'manifests/<app>/*', 'locks/<app>/*'],
    's3:AbortMultipartUpload': ['data/<app>/*'],
    's3:DeleteObject': ['locks/<app>/*'],
  },
  pop: {
    's3:ListBucket': ['data/<app>/', 'manifests/<app>/'],
    's3:GetObject': ['data/<app>/*', 'manifests/<app>/*'],
  },
  prune: {
    's3:ListBucket': ['data/<app>/', 'manifests/<app>/', 'locks/<app>/'],
    // data: the served entrypoints, whose MD5 tells which build is live.
    's3:GetObject': ['data/<app>/*', 'manifests/<app>/*', 'locks/<app>/*'],
    's3:PutObject': ['locks/<app>/*'],
    's3:DeleteObject': ['data/<app>/*', 'manifests/<app>/*', 'locks/<app>/*'],
  },
  ls: {
    's3:ListBucket': ['manifests/<app>/'],
    's3:GetObject': ['manifests/<app>/*'],
  },
}

/** Valkey commands and the keys (`~`) and channels (`&`) they may touch. */
const VALKEY_PERMISSIONS: Record<Command, { commands: readonly string[]; keys: readonly string[]; channels?: readonly string[] }> = {
  populate: {
    // EVAL: the writer lock's compare-and-swap (a Lua script on the lock key alone), and dropping
    // stale index entries (ZSCORE, ZREM in a script on the index). SCAN, ZADD, SET: the one-time
    // adoption of the app (valkey-index.ts).
    commands: ['SCAN', 'ZSCAN', 'ZADD', 'ZSCORE', 'ZREM', 'STRLEN', 'GET', 'SET', 'PERSIST', 'EXISTS', 'DEL', 'UNLINK', 'EVAL', 'PUBLISH'],
    keys: ['data:<app>:*', 'manifest:<app>:*', 'lock:<app>:*', 'lease:<app>:writer', 'push-cache-index:{<app>}:*'],
    channels: ['<channel>'],
  },
  // SCAN only until a writer adopted the app: a reader cannot write the index, so it scans instead.
  pop: { commands: ['SCAN', 'ZSCAN', 'EXISTS', 'STRLEN', 'GET'], keys: ['data:<app>:*', 'manifest:<app>:*', 'lock:<app>:*', 'push-cache-index:{<app>}:*'] },
  prune: {
    commands: ['SCAN', 'ZSCAN', 'ZADD', 'ZSCORE', 'ZREM', 'STRLEN', 'GET', 'SET', 'EXISTS', 'DEL', 'UNLINK', 'EVAL'],
    keys: ['data:<app>:*', 'manifest:<app>:*', 'lock:<app>:*', 'lease:<app>:writer', 'push-cache-index:{<app>}:*'],
  },
  ls: { commands: ['SCAN', 'ZSCAN', 'EXISTS', 'STRLEN', 'GET'], keys: ['data:<app>:*', 'manifest:<app>:*', 'lock:<app>:*', 'push-cache-index:{<app>}:*'] },
}

/** Every Valkey command needs these besides: the client's ready check, which waits while the server loads its data. */
const VALKEY_CONNECTION = ['INFO'] as const

const forApp = (pattern: string, app: string) => pattern.replaceAll('<app>', app)
/** The channel the tests announce on. */
const CHANNEL = 'push-cache:builds'

/**
 * An IAM policy granting `command` on `app` in `bucket`. `moto` adapts it to what moto checks, which
 * is not what AWS checks: moto evaluates no conditions (so listing cannot be narrowed to prefixes),
 * and it authorizes a DeleteObjects request against the bucket, where AWS checks every key.
 */
export function s3Policy(command: Command, bucket: string, app: string, { moto = false } = {}): object {
  const statements = Object.entries(S3_PERMISSIONS[command]).map(([action, patterns]) =>
    action === 's3:ListBucket'
      ? {
          Effect: 'Allow',
          Action: action,
          Resource: `arn:aws:s3:::${bucket}`,
          ...(moto ? {} : { Condition: { StringLike: { 's3:prefix': patterns.map((prefix) => `${forApp(prefix, app)}*`) } } }),
        }
      : {
          Effect: 'Allow',
          Action: action,
          Resource: [
            ...patterns.map((pattern) => `arn:aws:s3:::${bucket}/${forApp(pattern, app)}`),
            ...(moto && action === 's3:DeleteObject' ? [`arn:aws:s3:::${bucket}`] : []),
          ],
        },
  )
  return { Version: '2012-10-17', Statement: statements }
}

/** The rules of `ACL SETUSER` for `command` on `app`, after `on >password`. */
export function valkeyAclRules(command: Command, app: string): string[] {
  const { commands, keys, channels = [] } = VALKEY_PERMISSIONS[command]
  return [
    'resetkeys',
    'resetchannels',
    '-@all',
    ...[...VALKEY_CONNECTION, ...commands].map((name) => `+${name.toLowerCase()}`),
    ...keys.map((pattern) => `~${forApp(pattern, app)}`),
    ...channels.map((channel) => `&${channel.replace('<channel>', CHANNEL)}`),
  ]
}

const code = (items: readonly string[]) => items.map((item) => `\`${item}\``).join(', ')

/** The README's table of permissions, rendered from the lists above. */
export function permissionsTable(): string {
  const rows = COMMANDS.map((command) => {
    const s3 = Object.entries(S3_PERMISSIONS[command])
      .map(([action, patterns]) => `${action.replace('s3:', '')} ${code(patterns)}`)
      .join('; ')
    const { commands, keys, channels = [] } = VALKEY_PERMISSIONS[command]
    const valkey = `${code(commands)} on ${code(keys)}${channels.length ? `; channel ${code(channels)} (with \`announce.channel\`)` : ''}`
    return `| \`${command}\` | ${s3} | ${valkey} |`
  })
  return ['| command | S3 actions (on keys, or prefixes listed) | Valkey commands on keys |', '| --- | --- | --- |', ...rows].join('\n')
}
