// fec's dev setup: webpack-dev-server writing every build to disk. With `watch: true` too, still nothing is pushed.
const { resolve } = require('node:path')
const pushCache = require('unplugin-push-cache/webpack')

module.exports = {
  mode: 'development',
  entry: './src/main.js',
  output: { path: resolve(__dirname, 'dist-serve'), filename: '[name].js' },
  devServer: {
    host: '127.0.0.1',
    port: Number(process.env.PORT),
    hot: false,
    liveReload: false,
    client: false,
    devMiddleware: { writeToDisk: true },
  },
  plugins: [pushCache({ app: 'consumer-serve', store: '.push-cache-serve', watch: true })],
}
