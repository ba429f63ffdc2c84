// webpack's Node API, as webpack-cli would call it, without installing webpack-cli.
const webpack = require('webpack')

webpack(require('./webpack.config.js'), (error, stats) => {
  if (error || stats.hasErrors()) {
    console.error(error ?? stats.toString('errors-only'))
    process.exit(1)
  }
})
