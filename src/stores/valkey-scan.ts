import { Cluster, type Redis } from 'iovalkey'
import type { StoreEntry } from '../core/store/store'
import type { ValkeyConnection } from './valkey-connection'

/** `SCAN MATCH` takes a glob: a prefix is matched literally only with its metacharacters escaped. */
const escapeGlob = (text: string): string => text.replace(/[*?[\]\\]/g, '\\$&')

/**
 * Pages of the keys that match the glob `match`, each with the node that holds them, every key
 * once. https://valkey.io/commands/scan/ ; every master holds a share of the keys in a cluster, and
 * the walk reads the whole keyspace whatever `match` says: its cost grows with every key on the server.
 */
async function* scanPages({ client, guard }: ValkeyConnection, match: string): AsyncIterable<{ node: Redis; keys: string[] }> {
  const valkey = await client()
  for (const node of valkey instanceof Cluster ? valkey.nodes('master') : [valkey]) {
    const seen = new Set<string>() // SCAN may return a key twice
    let cursor = '0'
    do {
      const [next, page] = await guard(node.scan(cursor, 'MATCH', match, 'COUNT', 1000))
      cursor = next
      const keys = page.filter((key) => !seen.has(key))
      for (const key of keys) seen.add(key)
      yield { node, keys }
    } while (cursor !== '0')
  }
}

/** Every key that matches the glob `match`. */
export async function* scanKeys(connection: ValkeyConnection, match: string): AsyncIterable<string> {
  for await (const { keys } of scanPages(connection, match)) yield* keys
}

/** Every key that starts with `prefix`, with its size: the sizes of a page cost one pipelined round of STRLEN. */
export async function* scanPrefix(connection: ValkeyConnection, prefix: string): AsyncIterable<StoreEntry> {
  for await (const { node, keys } of scanPages(connection, `${escapeGlob(prefix)}*`)) {
    const sizes = await connection.guard(Promise.all(keys.map((key) => node.strlen(key))))
    for (const [index, key] of keys.entries()) yield { key, size: sizes[index] }
  }
}
