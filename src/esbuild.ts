import { createEsbuildPlugin } from 'unplugin'
import { type EsbuildPlugin, unpluginFactory } from './plugin'

const pushCache: EsbuildPlugin = createEsbuildPlugin(unpluginFactory)
export default pushCache
