import pushCache from 'unplugin-push-cache/vite'
import { defineConfig } from 'vite'

export default defineConfig({
  logLevel: 'warn',
  plugins: [pushCache({ app: 'consumer-vite', timestamp: 1700000000 })],
})
