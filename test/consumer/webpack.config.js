const { resolve } = require('node:path')
const pushCache = require('unplugin-push-cache/webpack')

module.exports = {
  mode: 'production',
  entry: './src/main.js',
  output: { path: resolve(__dirname, 'dist-webpack'), filename: '[name].[contenthash].js', clean: true },
  plugins: [pushCache({ app: 'consumer-webpack', timestamp: 1700000000 })],
}
