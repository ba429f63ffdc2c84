import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Redis } from 'iovalkey'
import type { Store } from '../../src/core/store/store'
import type { S3Options } from '../../src/options'
import { createStore } from '../../src/stores'
import { tempDir, tree } from './fs'
import { createBucket, listObjects, putObject, s3CliEnv, s3StoreOptions, s3StoreUrl } from './s3'
import { appKeys, plantKey, valkeyEnv, valkeyUrl } from './valkey'

export const STORE_KINDS = ['local', 's3', 'valkey'] as const
export type StoreKind = (typeof STORE_KINDS)[number]

/** One real store, empty for the app of the test, and what a test does behind its back. */
export interface StoreUnderTest {
  kind: StoreKind
  /** As a user gives it: `--store`, `PUSH_CACHE_STORE`. */
  url: string
  /** What the CLI needs in its environment to reach it. */
  env: Record<string, string>
  s3: S3Options
  open(): Promise<Store>
  /** Writes a key as another tool would. */
  plant(key: string, body: string | Buffer): Promise<void>
  /** Every key of `app` (data, manifests, locks), sorted. */
  keys(app: string): Promise<string[]>
  close(): Promise<void>
}

/** A fresh directory, a fresh bucket, or the shared Valkey server (tests there use their own app). */
export async function storeUnderTest(kind: StoreKind): Promise<StoreUnderTest> {
  if (kind === 'local') {
    const root = await tempDir()
    return {
      kind,
      url: root,
      env: {},
      s3: {},
      open: () => createStore(root, { s3: {}, valkey: {} }),
      async plant(key, body) {
        await mkdir(dirname(join(root, key)), { recursive: true })
        await writeFile(join(root, key), body)
      },
      keys: async (app) => (await tree(root)).filter((key) => key.startsWith(`data/${app}/`) || key.startsWith(`manifests/${app}/`)),
      async close() {},
    }
  }
  if (kind === 's3') {
    const bucket = await createBucket()
    const url = s3StoreUrl(bucket)
    return {
      kind,
      url,
      env: s3CliEnv(),
      s3: s3StoreOptions(),
      open: () => createStore(url, { s3: s3StoreOptions(), valkey: {} }),
      plant: (key, body) => putObject(bucket, key, body),
      keys: async (app) => (await listObjects(bucket)).map((object) => object.key).filter((key) => key.split('/')[1] === app),
      async close() {},
    }
  }
  const client = new Redis(valkeyEnv().standalone)
  return {
    kind,
    url: valkeyUrl(),
    env: {},
    s3: {},
    open: () => createStore(valkeyUrl(), { s3: {}, valkey: {} }),
    plant: (key, body) => plantKey(client, key, body),
    keys: (app) => appKeys(client, app),
    close: async () => client.disconnect(),
  }
}
