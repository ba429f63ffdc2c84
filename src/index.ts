import { createUnplugin, type UnpluginFactory } from 'unplugin'
import { esbuildSetup } from './adapters/esbuild'
import { rollupHooks } from './adapters/rollup'
import { createPushSession } from './adapters/session'
import { applyWebpackHooks } from './adapters/webpack'
import { type Options, resolveOptions } from './core/options'

const NAME = 'unplugin-push-cache'

export const unpluginFactory: UnpluginFactory<Options | undefined, false> = (userOptions, meta) => {
  // Resolved once, here, so a wrong option fails when the config loads, not after a long build.
  const options = resolveOptions(userOptions)
  if (options.disable) return { name: NAME }

  const session = createPushSession(userOptions, options, meta.framework)
  let viteWatch = false
  return {
    name: NAME,
    rollup: rollupHooks(session),
    rolldown: rollupHooks(session),
    vite: {
      ...rollupHooks(session, (buildMeta) => buildMeta.watchMode || viteWatch),
      // The dev server writes nothing to disk, and an SSR build is not what browsers load.
      apply: 'build',
      applyToEnvironment: (environment) => environment.config.consumer === 'client',
      configResolved(config) {
        viteWatch = Boolean(config.build.watch)
      },
    },
    webpack: (compiler) => applyWebpackHooks(compiler, session, NAME),
    rspack: (compiler) => applyWebpackHooks(compiler, session, NAME),
    esbuild: { setup: esbuildSetup(session) },
  }
}

export const unplugin = /* #__PURE__ */ createUnplugin(unpluginFactory)
export default unplugin

export type { AnnounceReport, BuildAnnouncement } from './core/announce'
export type { StoredBuild } from './core/builds'
export { listBuilds } from './core/builds'
export { PushCacheError, type PushCacheErrorCode } from './core/errors'
export { collectFiles } from './core/files'
export type { Logger } from './core/logger'
export { createLogger } from './core/logger'
export type { Manifest, ManifestEntry } from './core/manifest'
export type { AnnounceOptions, CacheControlOptions, Options, PruneOptions, ResolvedOptions, S3Options, ValkeyOptions } from './core/options'
export { resolveOptions } from './core/options'
export type { PopReport } from './core/pop'
export { pop } from './core/pop'
export type { PopulateReport } from './core/populate'
export { populate } from './core/populate'
export type { ProgressEvent } from './core/progress'
export type { PruneReport } from './core/prune-store'
export { prune } from './core/prune-store'
export { pushFiles } from './core/push'
export type { PutBody, PutOptions, Store, StoreEntry, StoreLayout } from './core/store'
export { createStore } from './stores'
