// The documented imports, as an ES module: the package's `.d.ts` types.
import type { Options } from 'unplugin-push-cache'
import { PushCacheError } from 'unplugin-push-cache'
import esbuildPlugin from 'unplugin-push-cache/esbuild'
import rolldownPlugin from 'unplugin-push-cache/rolldown'
import rollupPlugin from 'unplugin-push-cache/rollup'
import rspackPlugin from 'unplugin-push-cache/rspack'
import vitePlugin from 'unplugin-push-cache/vite'
import webpackPlugin from 'unplugin-push-cache/webpack'

const options: Options = { app: 'inventory', store: './.push-cache', cacheControl: { rules: { 'locales/**': 'public, max-age=300' } } }
export const plugins = [
  vitePlugin(options),
  rollupPlugin(options),
  rolldownPlugin(options),
  webpackPlugin(options),
  rspackPlugin(options),
  esbuildPlugin(options),
]
export const isUploadFailure = (error: unknown) => error instanceof PushCacheError && error.code === 'UPLOAD_FAILED'
