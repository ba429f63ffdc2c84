import { invalidOption } from '../core/model/errors'

/** Options of the Valkey/Redis store (`store: 'valkey://host:6379[/db]'`). */
export interface ValkeyOptions {
  /**
   * Seed nodes of a Valkey/Redis Cluster (`host:port`); set to use cluster mode.
   * @default undefined (standalone)
   */
  cluster?: string[]
  /**
   * ACL user name.
   * @default the user in the URL, else process.env.PUSH_CACHE_VALKEY_USERNAME
   */
  username?: string
  /**
   * Password.
   * @default the password in the URL, else process.env.PUSH_CACHE_VALKEY_PASSWORD
   */
  password?: string
  /**
   * Seconds a build may take to write: its keys expire on their own after this unless the build
   * completed, so a crashed populate never leaks or hides data for longer.
   * @default 3600
   */
  lockTtl?: number
  /**
   * How an app's keys are listed. `once`: from push-cache's index of the app, after one SCAN of the
   * whole keyspace the first time an app is listed, which adopts the builds valpop wrote until then.
   * `always`: a SCAN of the whole keyspace every time (apps that valpop still pushes into).
   * `never`: from the index alone (apps only push-cache writes, on a server with many keys).
   * @default process.env.PUSH_CACHE_VALKEY_SCAN, else 'once'
   */
  scan?: 'once' | 'always' | 'never'
}

export type ValkeyScan = NonNullable<ValkeyOptions['scan']>
const SCAN_MODES: readonly ValkeyScan[] = ['once', 'always', 'never']

/** `lockTtl` when unset, in seconds. */
const DEFAULT_LOCK_TTL = 3600

/** Seconds a build may take to write to this Valkey store: its keys expire after that unless the build completed. */
export const lockTtlOf = (options: ValkeyOptions): number => options.lockTtl ?? DEFAULT_LOCK_TTL

/** `scan`, else PUSH_CACHE_VALKEY_SCAN, else `once`; anything else is refused. */
export function scanModeOf(options: ValkeyOptions, env: NodeJS.ProcessEnv = process.env): ValkeyScan {
  const mode = options.scan ?? env.PUSH_CACHE_VALKEY_SCAN ?? 'once'
  if (!SCAN_MODES.includes(mode as ValkeyScan))
    throw invalidOption('valkey.scan', `is ${JSON.stringify(mode)}`, 'Use once (the default), always or never (option valkey.scan or PUSH_CACHE_VALKEY_SCAN).')
  return mode as ValkeyScan
}
