import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { invalidOption, type PushCacheError, redact } from '../core/model/errors'
import { DEFAULT_TIMEOUTS, type StoreTimeouts } from '../core/model/options'
import type { Store } from '../core/store/store'
import type { ResolvedOptions } from '../options'

export { diagnose } from './diagnose'

const VALKEY_SCHEMES = ['valkey:', 'valkeys:', 'redis:', 'rediss:', 'valkey+cluster:', 'valkeys+cluster:', 'redis+cluster:', 'rediss+cluster:']

type StoreOptions = Pick<ResolvedOptions, 's3' | 'valkey'> & Partial<Pick<ResolvedOptions, 'announce'>> & Partial<StoreTimeouts>

/** `s3:`, `redis:`…, lower-cased; `c:` for a Windows path; undefined for a plain path. */
const schemeOf = (url: string) => /^([a-z][a-z0-9+.-]*:)/i.exec(url)?.[1]?.toLowerCase()

/** A Valkey or Redis URL: the stores whose server can also carry a notification channel. */
export const isValkeyUrl = (url: string): boolean => VALKEY_SCHEMES.includes(schemeOf(url) ?? '')

const STORE_FORMS = 'Use s3://bucket[/root], valkey://host:6379, redis://host:6379, file:./dir or a directory path.'

/** A store URL with a slip in its `://` (`s3:/b`, `s3:b`, `redis//h`, `valkey:pw@h`): refused, never taken for a path. */
function malformed(url: string): PushCacheError {
  return invalidOption('store', `is a malformed URL (${redact(url)}): a store URL starts with its scheme and \`://\``, STORE_FORMS)
}

/**
 * Which driver a store URL names, without loading it: the plugin calls this when the config loads,
 * so a wrong scheme (`s4://x`) or a mistyped URL fails before the bundler builds anything.
 */
export function storeKind(url: string): 'local' | 's3' | 'valkey' {
  const scheme = schemeOf(url)
  const remote = scheme === 's3:' || VALKEY_SCHEMES.includes(scheme ?? '')
  if (remote && !/^[a-z0-9+]+:\/\/[^/]/i.test(url)) throw malformed(url)
  if (!scheme && /^(s3|valkeys?|rediss?)(\+cluster)?\/\//i.test(url)) throw malformed(url)
  if (!scheme || /^[a-z]:$/i.test(scheme) || scheme === 'file:') return 'local'
  if (scheme === 's3:') return 's3'
  if (remote) return 'valkey'
  throw invalidOption('store', `has the unknown scheme ${JSON.stringify(scheme)} (${redact(url)})`, STORE_FORMS)
}

/**
 * Opens the store a URL names, and checks that it can do what the options ask of it. Remote
 * drivers are imported on first use, so a build that pushes to a directory never loads the AWS
 * SDK or a Valkey client.
 */
export async function createStore(url: string, options: StoreOptions): Promise<Store> {
  const store = await openDriver(url, options)
  if (options.announce?.channel !== undefined && !store.publish) {
    await store.close()
    throw invalidOption(
      'announce.channel',
      `needs a store with channels (Valkey or Redis), and ${store.display} is a ${store.kind} store`,
      'Drop `announce.channel` (`--announce-channel`), or announce through vwatch with `announce.vwatch` (`--announce-vwatch`).',
    )
  }
  return store
}

async function openDriver(url: string, options: StoreOptions): Promise<Store> {
  const timeouts = {
    connectTimeout: options.connectTimeout ?? DEFAULT_TIMEOUTS.connectTimeout,
    requestTimeout: options.requestTimeout ?? DEFAULT_TIMEOUTS.requestTimeout,
  }
  switch (storeKind(url)) {
    case 's3': {
      const { createS3Store } = await import('./s3')
      return createS3Store(url, options.s3, timeouts)
    }
    case 'valkey': {
      const { createValkeyStore } = await import('./valkey')
      return createValkeyStore(url, options.valkey, timeouts)
    }
    case 'local': {
      const { createLocalStore } = await import('./local')
      return createLocalStore(/^file:/i.test(url) ? (url.startsWith('file://') ? fileURLToPath(url) : resolve(url.slice('file:'.length))) : resolve(url))
    }
  }
}
