import { chmod, writeFile } from 'node:fs/promises'
import type { Plugin } from 'esbuild'
import { defineConfig } from 'tsup'
import { version } from './package.json'

/**
 * The AWS SDK ships CommonJS only. `import`ed from an ES module, Node parses each of its modules a
 * second time for their export names (cjs-module-lexer), ~100 ms of CPU on every CLI run that talks
 * to S3; `require`d, it is loaded as CommonJS once. The ES build `require`s it through a stand-in
 * CommonJS module per import, whose names esbuild binds as any CommonJS module's; the `require` it
 * calls is the one {@link esmRequire} defines.
 */
const SDK = /^@(aws-sdk|smithy)\//
const requireCommonJsSdk: Plugin = {
  name: 'require-commonjs-sdk',
  setup(build) {
    const namespace = 'required-sdk'
    build.onResolve({ filter: SDK }, ({ path, namespace: from }) => (from === namespace ? { path, external: true } : { path, namespace }))
    build.onLoad({ filter: /.*/, namespace }, ({ path }) => ({ contents: `module.exports = require(${JSON.stringify(path)})`, loader: 'js' }))
  },
}
/** A `require` for the ES build's modules (esbuild's `__require` calls it); CommonJS has its own. */
const esmRequire = ({ format }: { format: string }) =>
  format === 'esm' ? { js: "import { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);" } : {}

/**
 * The `push-cache` bin, `dist/cli.js`, runs the CommonJS build of the CLI. Started from the ES build,
 * Node compiled and linked each of its modules as ES modules first: ~20 ms more CPU on every run
 * (`--version`, medians of 15: 164 against 147 ms; `node -e 0` ~75), before the first request.
 * The bin keeps its name, an ES module as the package's `type` says, and only `require`s.
 */
const CLI_BIN = `#!/usr/bin/env node
// The CommonJS build of the CLI, which starts with less CPU than the ES one (see tsup.config.ts).
import { createRequire } from 'node:module'
createRequire(import.meta.url)('./cli.cjs')
`
async function writeCliBin() {
  await writeFile('dist/cli.js', CLI_BIN)
  await chmod('dist/cli.js', 0o755)
}

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
  // Left to the plugin below, which tsup's own externals would run before.
  noExternal: [SDK],
  esbuildPlugins: [requireCommonJsSdk],
  banner: esmRequire,
  onSuccess: writeCliBin,
})
