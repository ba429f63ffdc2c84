import { type CoreOptions, checkCoreOptions, type ResolvedCoreOptions, resolveCoreOptions } from './core/model/options'
import type { S3Options } from './stores/s3-options'
import type { ValkeyOptions } from './stores/valkey-options'

export type { AnnounceOptions, CacheControlOptions, PruneOptions } from './core/model/options'
export type { S3Options } from './stores/s3-options'
export type { ValkeyOptions } from './stores/valkey-options'

/**
 * The plugin's and the CLI's options: what core takes, and each store's own settings, which only
 * the store they name reads.
 */
export interface Options extends CoreOptions {
  /** S3 store settings. @default {} */
  s3?: S3Options
  /** Valkey/Redis store settings. @default {} */
  valkey?: ValkeyOptions
}

export interface ResolvedOptions extends ResolvedCoreOptions {
  s3: S3Options
  valkey: ValkeyOptions
}

const withStores = (core: ResolvedCoreOptions, options: Options): ResolvedOptions => ({ ...core, s3: { ...options.s3 }, valkey: { ...options.valkey } })

/** Merges defaults and env fallbacks into a fully typed object, and checks every value once. */
export function resolveOptions(options: Options = {}, env: NodeJS.ProcessEnv = process.env, now: () => number = Date.now): ResolvedOptions {
  return withStores(resolveCoreOptions(options, env, now), options)
}

/**
 * {@link resolveOptions} without the one check that waits for a build: `app` may be missing (`''`).
 * The plugin checks everything else when the config loads, so a wrong value fails before any
 * bundling, while a dev server, which pushes nothing, needs no `app` at all.
 */
export function checkOptions(options: Options = {}, env: NodeJS.ProcessEnv = process.env, now: () => number = Date.now): ResolvedOptions {
  return withStores(checkCoreOptions(options, env, now), options)
}
