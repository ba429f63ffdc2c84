// Shaped like a ConsoleDot build by fec (frontend-components-config): module federation with
// `exposed-./RootApp` chunks, fonts as `fonts/[name][ext]`, hidden source maps under `sourcemaps/`,
// and `fed-mods.json` at the root of the output.
const { resolve } = require('node:path')
const { container } = require('webpack')
const pushCache = require('unplugin-push-cache/webpack')

/** What fec's federation plugin writes: the app's entry script, for the shell to load. */
class FedModsPlugin {
  apply(compiler) {
    compiler.hooks.thisCompilation.tap('FedModsPlugin', (compilation) => {
      compilation.hooks.processAssets.tap({ name: 'FedModsPlugin', stage: compiler.webpack.Compilation.PROCESS_ASSETS_STAGE_REPORT }, () => {
        const entry = Object.keys(compilation.assets).find((name) => /^inventory\.[0-9a-f]+\.js$/.test(name))
        const fedMods = { inventory: { entry: [`/apps/inventory/${entry}`], modules: [] } }
        compilation.emitAsset('fed-mods.json', new compiler.webpack.sources.RawSource(JSON.stringify(fedMods)))
      })
    })
  }
}

module.exports = {
  mode: 'production',
  context: resolve(__dirname, 'fec'),
  entry: { App: './src/bootstrap.js' },
  devtool: 'hidden-source-map',
  output: {
    path: resolve(__dirname, 'dist-fec'),
    filename: '[name].[contenthash].js',
    sourceMapFilename: 'sourcemaps/[file].map',
    publicPath: 'auto',
    clean: true,
  },
  module: { rules: [{ test: /\.woff2$/, type: 'asset/resource', generator: { filename: 'fonts/[name][ext]' } }] },
  plugins: [
    new container.ModuleFederationPlugin({
      name: 'inventory',
      filename: 'inventory.[contenthash].js',
      exposes: { './RootApp': { import: './src/RootApp.js', name: 'exposed-./RootApp' } },
    }),
    new FedModsPlugin(),
    pushCache({ app: 'inventory', timestamp: 1700000000, store: process.env.PUSH_CACHE_STORE }),
  ],
}
