import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { invalidOption, type PushCacheError, redact } from '../core/model/errors'
import { DEFAULT_TIMEOUTS, type StoreTimeouts } from '../core/model/options'
import type { Store } from '../core/store/store'
import type { ResolvedOptions } from '../options'

import { CREDENTIALS_FIX } from './diagnose'

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

/** Files whose first line says the machine is an EC2 instance, whose role the AWS SDK fetches from the metadata service. */
const EC2_MARKERS = ['/sys/devices/virtual/dmi/id/sys_vendor', '/sys/hypervisor/uuid']

/**
 * Whether the AWS SDK's credential chain has anything to try, known without the network: keys or
 * a profile in the environment, the shared files, a web identity token (EKS), a container's
 * credentials endpoint (ECS), or an EC2 instance's metadata service.
 */
function awsCredentialsMayExist(env: NodeJS.ProcessEnv): boolean {
  const variables = [
    'AWS_ACCESS_KEY_ID',
    'AWS_PROFILE',
    'AWS_WEB_IDENTITY_TOKEN_FILE',
    'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
    'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  ]
  if (variables.some((name) => env[name])) return true
  const files = [env.AWS_SHARED_CREDENTIALS_FILE || join(homedir(), '.aws', 'credentials'), env.AWS_CONFIG_FILE || join(homedir(), '.aws', 'config')]
  if (files.some((file) => existsSync(file))) return true
  if (env.AWS_EC2_METADATA_DISABLED?.toLowerCase() === 'true') return false
  return EC2_MARKERS.some((file) => {
    try {
      return /^(amazon|ec2)/i.test(readFileSync(file, 'utf8'))
    } catch {
      return false
    }
  })
}

/**
 * Everything about the store that is known without the network: its URL, a channel only Valkey
 * has, S3 credentials that the chain cannot find anywhere. The plugin calls it when the config
 * loads, the CLI before any file is read, so these fail before a build or a transfer starts.
 */
export function checkStore(
  options: Pick<ResolvedOptions, 'store' | 's3'> & Partial<Pick<ResolvedOptions, 'announce'>>,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const kind = storeKind(options.store)
  if (options.announce?.channel !== undefined && kind !== 'valkey')
    throw invalidOption(
      'announce.channel',
      `needs a store with channels (Valkey or Redis), and ${redact(options.store)} is a ${kind} store`,
      'Drop `announce.channel` (`--announce-channel`), or announce through vwatch with `announce.vwatch` (`--announce-vwatch`).',
    )
  const endpoint = kind === 's3' ? options.s3.endpoint || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL : undefined
  if (endpoint && !/^https?:$/.test(URL.parse(endpoint)?.protocol ?? ''))
    throw invalidOption(
      's3.endpoint',
      `is not a URL (${redact(endpoint)})`,
      'Give http(s)://host[:port] (`--s3-endpoint`, AWS_ENDPOINT_URL_S3); credentials belong in the environment, not in the URL.',
    )
  if (kind === 's3' && !options.s3.credentials && !awsCredentialsMayExist(env))
    throw invalidOption('store', `${redact(options.store)} is an S3 store, and the AWS SDK has no credentials to find`, CREDENTIALS_FIX.s3!)
}

/**
 * Opens the store a URL names, and checks that it can do what the options ask of it. Remote
 * drivers are imported on first use, so a build that pushes to a directory never loads the AWS
 * SDK or a Valkey client.
 */
export async function createStore(url: string, options: StoreOptions): Promise<Store> {
  checkStore({ ...options, store: url })
  return openDriver(url, options)
}

/**
 * Starts loading the driver a URL names, without opening it: the AWS SDK takes ~200 ms to import,
 * which then overlaps with reading the build. A failure shows where the driver is opened.
 */
export function preloadDriver(url: string): void {
  const kind = storeKind(url)
  const loading = kind === 's3' ? import('./s3') : kind === 'valkey' ? import('./valkey') : import('./local')
  loading.catch(() => {})
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
