import type { StoreLayout } from './store'

/**
 * Key names of both layouts, in one place. Flat (S3, local) follows the push-cache ticket and
 * valpop's S3 mode; versioned follows valpop's Valkey mode byte for byte.
 */
export interface Layout {
  /** Prefix under which every data key of the app lives. */
  dataPrefix(app: string): string
  dataKey(app: string, timestamp: number, relpath: string): string
  /** The relpath (and, for versioned keys, the build) of a data key, or undefined if it is not one. */
  parseDataKey(app: string, key: string): { relpath: string; timestamp?: number } | undefined
  manifestPrefix(app: string): string
  manifestKey(app: string, timestamp: number): string
  /** The timestamp a manifest key names, or undefined for a key that is not a manifest. */
  parseManifestKey(app: string, key: string): number | undefined
  /** Where running pushes and prunes of the app leave their leases (see `leases.ts`). */
  leasePrefix(app: string): string
}

const TIMESTAMP = /^\d+$/

export const flatLayout: Layout = {
  dataPrefix: (app) => `data/${app}/`,
  dataKey: (app, _timestamp, relpath) => `data/${app}/${relpath}`,
  parseDataKey(app, key) {
    const prefix = `data/${app}/`
    return key.startsWith(prefix) && key.length > prefix.length ? { relpath: key.slice(prefix.length) } : undefined
  },
  manifestPrefix: (app) => `manifests/${app}/`,
  manifestKey: (app, timestamp) => `manifests/${app}/${timestamp}`,
  parseManifestKey: (app, key) => parseTimestampAfter(`manifests/${app}/`, key),
  leasePrefix: (app) => `locks/${app}/`,
}

/** `data:<app>:<ts>:<relpath>`: the relpath is everything after the third `:`, so it may hold `:` itself. */
export const versionedLayout: Layout & { lockKey(app: string, timestamp: number): string; lockPrefix(app: string): string } = {
  dataPrefix: (app) => `data:${app}:`,
  dataKey: (app, timestamp, relpath) => `data:${app}:${timestamp}:${relpath}`,
  parseDataKey(app, key) {
    const prefix = `data:${app}:`
    if (!key.startsWith(prefix)) return undefined
    const rest = key.slice(prefix.length)
    const separator = rest.indexOf(':')
    const timestamp = rest.slice(0, separator)
    if (separator < 1 || !TIMESTAMP.test(timestamp) || separator === rest.length - 1) return undefined
    return { timestamp: Number(timestamp), relpath: rest.slice(separator + 1) }
  },
  manifestPrefix: (app) => `manifest:${app}:`,
  manifestKey: (app, timestamp) => `manifest:${app}:${timestamp}`,
  parseManifestKey: (app, key) => parseTimestampAfter(`manifest:${app}:`, key),
  leasePrefix: (app) => `lease:${app}:`,
  lockPrefix: (app) => `lock:${app}:`,
  lockKey: (app, timestamp) => `lock:${app}:${timestamp}`,
}

function parseTimestampAfter(prefix: string, key: string): number | undefined {
  const rest = key.startsWith(prefix) ? key.slice(prefix.length) : ''
  return TIMESTAMP.test(rest) ? Number(rest) : undefined
}

export const layoutOf = (layout: StoreLayout): Layout => (layout === 'flat' ? flatLayout : versionedLayout)
