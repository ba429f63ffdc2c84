import type { Cluster, Redis } from 'iovalkey'
import { expect, it } from 'vitest'
import { listKeys } from '../../src/core/store/builds'
import type { Store } from '../../src/core/store/store'
import { createValkeyStore } from '../../src/stores/valkey'
import { testStoreContract } from '../helpers/store-contract'
import { clusterUrl, rawClient, rawCluster, valkeyUrl } from '../helpers/valkey'

/** The contract wants an empty store: clear what its keys (`data/…`, `manifests/…`) left behind. */
async function emptyStore(url: string): Promise<Store> {
  const store = createValkeyStore(url, {})
  await store.delete([...(await listKeys(store, 'data/')), ...(await listKeys(store, 'manifests/'))])
  return store
}

function valkeyTests(raw: Redis | Cluster) {
  return (store: () => Store) => {
    it('lists a prefix with glob metacharacters literally', async () => {
      await store().put('data/g*l?b[1]\\/a', Buffer.from('1'))
      await store().put('data/gXlYb1/a', Buffer.from('2'))
      expect(await listKeys(store(), 'data/g*l?b[1]\\')).toEqual(['data/g*l?b[1]\\/a'])
    })

    it('writes with an expiry; persist removes it and names the keys that are gone', async () => {
      await store().put('data/app/ttl.js', Buffer.from('t'), { expiresIn: 100 })
      expect(await raw.ttl('data/app/ttl.js')).toBeGreaterThan(90)
      expect(await store().persist!(['data/app/ttl.js', 'data/app/gone.js'])).toEqual(['data/app/gone.js'])
      expect(await raw.ttl('data/app/ttl.js')).toBe(-1)
      expect(await store().persist!(['data/app/ttl.js'])).toEqual([])
    })
  }
}

const db1 = rawClient()
await db1.select(1)
testStoreContract('valkey', () => emptyStore(valkeyUrl(1)), { manyKeys: true, additionalTests: valkeyTests(db1) })
testStoreContract('valkey cluster', () => emptyStore(clusterUrl()), { manyKeys: true, additionalTests: valkeyTests(rawCluster()) })
