import { defineConfig } from 'tsup'
import { version } from './package.json'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    vite: 'src/vite.ts',
    rollup: 'src/rollup.ts',
    rolldown: 'src/rolldown.ts',
    webpack: 'src/webpack.ts',
    rspack: 'src/rspack.ts',
    esbuild: 'src/esbuild.ts',
    cli: 'src/cli.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  splitting: true,
  target: 'node20',
  shims: true,
  keepNames: true,
  // `require('unplugin-push-cache/webpack')` is the plugin itself, not `{ default }`.
  cjsInterop: true,
  // core/model/version.ts reads it: `push-cache --version` and the manifests' `generator`.
  define: { __PACKAGE_VERSION__: JSON.stringify(version) },
})
