import type { Store } from './store'

/**
 * Key names of both layouts, and what follows from them, in one place. Flat (S3, local) follows
 * the push-cache ticket and valpop's S3 mode; versioned follows valpop's Valkey mode byte for byte.
 * Core asks this object (through {@link layoutOf}) and never which family a store is.
 */
export interface Layout {
  /**
   * Each build writes keys of its own, never rewritten (versioned), instead of one key per path that
   * every build overwrites (flat). So a key's bytes are known from the manifest that names it, a
   * stored value holds no headers, and an older build pushed late cannot replace a newer one's bytes.
   */
  readonly keysPerBuild: boolean
  /** Keys that mark a build still being written (valpop's `lock:<app>:<ts>`); flat stores have none. */
  readonly locks?: { prefix(app: string): string; key(app: string, timestamp: number): string }
  /** Prefix under which every data key of the app lives. */
  dataPrefix(app: string): string
  dataKey(app: string, timestamp: number, relpath: string): string
  /** The relpath (and, for versioned keys, the build) of a data key, or undefined if it is not one. */
  parseDataKey(app: string, key: string): { relpath: string; timestamp?: number } | undefined
  manifestPrefix(app: string): string
  manifestKey(app: string, timestamp: number): string
  /** The timestamp a manifest key names, or undefined for a key that is not a manifest. */
  parseManifestKey(app: string, key: string): number | undefined
  /** Where the app's writer lock (see `writer-lock.ts`) and, on flat stores, pending records (`pending.ts`) live. */
  leasePrefix(app: string): string
}

const TIMESTAMP = /^\d+$/

export const flatLayout: Layout = {
  keysPerBuild: false,
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
export const versionedLayout: Layout = {
  keysPerBuild: true,
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
  locks: {
    prefix: (app) => `lock:${app}:`,
    key: (app, timestamp) => `lock:${app}:${timestamp}`,
  },
}

function parseTimestampAfter(prefix: string, key: string): number | undefined {
  const rest = key.startsWith(prefix) ? key.slice(prefix.length) : ''
  return TIMESTAMP.test(rest) ? Number(rest) : undefined
}

/** The layout of a store's keys: the one place that reads which family the store declared. */
export const layoutOf = (store: Pick<Store, 'layout'>): Layout => (store.layout === 'flat' ? flatLayout : versionedLayout)
