import { Readable } from 'node:stream'
import { DEFAULT_TIMEOUTS, type StoreTimeouts } from '../core/model/options'
import type { Store } from '../core/store/store'
import { isTransient } from '../core/util/concurrency'
import { parseValkeyUrl } from './valkey-client'
import { connectValkey } from './valkey-connection'
import { valkeyIndex } from './valkey-index'
import { valkeyKeyCommands } from './valkey-keys'
import { lockTtlOf, scanModeOf, type ValkeyOptions } from './valkey-options'

const DRIVER_NAME = 'valkey'

/**
 * Writes in flight by default: each `SET` costs no connection, and auto-pipelining sends all that
 * are ready in one round trip, so many in flight means few round trips (core still caps their bytes).
 */
const CONCURRENCY = 512

/**
 * Valkey or Redis, standalone or Cluster, with valpop's keys (`data:<app>:<ts>:<relpath>` = the raw
 * bytes, `lock:<app>:<ts>`), and an index per app that our writes keep (valkey-index.ts). A value holds bytes only: Content-Type and Cache-Control ride in the
 * build's manifest (`manifest:<app>:<ts>`, field `details`, written by core), so valpop's readers
 * still see plain data keys.
 *
 * Core runs up to `concurrency` puts at once; with auto-pipelining those commands leave in one
 * pipeline per tick (per node in a cluster) instead of one round trip each.
 */
export function createValkeyStore(url: string, options: ValkeyOptions, timeouts: StoreTimeouts = DEFAULT_TIMEOUTS): Store {
  const target = parseValkeyUrl(url, options)
  const connection = connectValkey(target, timeouts)
  const { client, guard } = connection
  const index = valkeyIndex(connection, scanModeOf(options))
  return {
    kind: DRIVER_NAME,
    layout: 'versioned',
    display: target.display,
    // Replies that say "not now" are already marked `transient` by `guard`.
    isTransient,
    pendingExpiry: { seconds: lockTtlOf(options), option: 'valkey.lockTtl' },
    concurrency: CONCURRENCY,
    // SET NX, and Lua compare-and-swap on a value's SHA-1 (valkey-keys.ts).
    conditionalWrites: true,
    ...valkeyKeyCommands(connection, index),

    // https://valkey.io/commands/get/
    async read(key: string) {
      const value = await guard((await client()).getBuffer(key))
      return value === null ? undefined : Readable.from([value])
    },

    // An app's keys from its index (valkey-index.ts): no SCAN of other apps' keys.
    list: (prefix: string) => index.list(prefix),

    // https://valkey.io/commands/publish/ ; in a cluster every node forwards it to its own subscribers.
    async publish(channel: string, message: string) {
      return guard((await client()).publish(channel, message))
    },

    close: () => connection.close(),
  }
}
