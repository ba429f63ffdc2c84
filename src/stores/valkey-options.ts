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
}

/** `lockTtl` when unset, in seconds. */
const DEFAULT_LOCK_TTL = 3600

/** Seconds a build may take to write to this Valkey store: its keys expire after that unless the build completed. */
export const lockTtlOf = (options: ValkeyOptions): number => options.lockTtl ?? DEFAULT_LOCK_TTL
