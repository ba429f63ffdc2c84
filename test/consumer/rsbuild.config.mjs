import pushCache from 'unplugin-push-cache/rspack'

export default {
  logLevel: 'warn',
  source: { entry: { index: './src/main.js' } },
  output: { distPath: { root: 'dist-rsbuild' } },
  tools: { rspack: { plugins: [pushCache({ app: 'consumer-rsbuild', timestamp: 1700000000 })] } },
}
