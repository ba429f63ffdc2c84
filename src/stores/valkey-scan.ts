import { Cluster } from 'iovalkey'
import type { StoreEntry } from '../core/store/store'
import type { ValkeyConnection } from './valkey-connection'

/** `SCAN MATCH` takes a glob: a prefix is matched literally only with its metacharacters escaped. */
const escapeGlob = (text: string): string => text.replace(/[*?[\]\\]/g, '\\$&')

/**
 * Every key that starts with `prefix`, with its size. https://valkey.io/commands/scan/ ; every
 * master holds a share of the keys in a cluster. The sizes of a page cost one pipelined round of STRLEN.
 */
export async function* scanPrefix({ client, guard }: ValkeyConnection, prefix: string): AsyncIterable<StoreEntry> {
  const valkey = await client()
  for (const node of valkey instanceof Cluster ? valkey.nodes('master') : [valkey]) {
    const seen = new Set<string>() // SCAN may return a key twice
    let cursor = '0'
    do {
      const [next, page] = await guard(node.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000))
      cursor = next
      const keys = page.filter((key) => !seen.has(key))
      const sizes = await guard(Promise.all(keys.map((key) => node.strlen(key))))
      for (const [index, key] of keys.entries()) {
        seen.add(key)
        yield { key, size: sizes[index] }
      }
    } while (cursor !== '0')
  }
}
