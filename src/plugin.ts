import type { UnpluginFactory } from 'unplugin'
import { esbuildSetup } from './adapters/esbuild'
import { rollupHooks } from './adapters/rollup'
import { createPushSession } from './adapters/session'
import { applyWebpackHooks } from './adapters/webpack'
import type { Options } from './options'

const NAME = 'unplugin-push-cache'

export const unpluginFactory: UnpluginFactory<Options | undefined, false> = (userOptions, meta) => {
  // Checked once, here; a build fails on a wrong option before it bundles, a dev server warns and runs.
  const session = createPushSession(userOptions, meta.framework)
  if (!session) return { name: NAME }
  let vite = { watch: false, mode: 'production' }
  return {
    name: NAME,
    rollup: rollupHooks(session),
    rolldown: rollupHooks(session),
    vite: {
      ...rollupHooks(session, (meta) => ({ watchMode: meta.watchMode || vite.watch, mode: vite.mode })),
      // The dev server's modules live in memory, and an SSR build is not what browsers load.
      apply(_config, env) {
        if (env.command === 'serve' && !env.isPreview) session.devServer()
        // A wrong option fails `vite build` here, while its config resolves, before it bundles.
        if (env.command === 'build') session.start()
        return env.command === 'build'
      },
      applyToEnvironment: (environment) => environment.config.consumer === 'client',
      configResolved(config) {
        vite = { watch: Boolean(config.build.watch), mode: config.mode }
      },
    },
    webpack: (compiler) => applyWebpackHooks(compiler, session, NAME),
    rspack: (compiler) => applyWebpackHooks(compiler, session, NAME),
    esbuild: { setup: esbuildSetup(session) },
  }
}

/**
 * What a bundler config needs to know of each plugin, and no more: the entries are typed with these
 * instead of the bundlers' own types (or unplugin's, which import all six), so that a project
 * type-checks them with `skipLibCheck: false` whichever bundlers it has installed.
 */
export type NamedPlugin = (options?: Options) => { name: string }
export type WebpackLikePlugin = (options?: Options) => { apply(compiler: unknown): void }
export type EsbuildPlugin = (options?: Options) => { name: string; setup(build: unknown): void | Promise<void> }
