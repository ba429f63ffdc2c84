// The same as CommonJS: the package's `.d.cts` types.
import type { Options } from 'unplugin-push-cache'

import pushCache = require('unplugin-push-cache/webpack')

const options: Options = { app: 'inventory' }
export const plugin = pushCache(options)
