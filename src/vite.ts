import { createVitePlugin } from 'unplugin'
import { type NamedPlugin, unpluginFactory } from './plugin'

// unplugin types the result as one plugin or an array; a factory that is not nested makes one.
const pushCache = createVitePlugin(unpluginFactory) as NamedPlugin
export default pushCache
