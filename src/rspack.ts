import { createRspackPlugin } from 'unplugin'
import { unpluginFactory, type WebpackLikePlugin } from './plugin'

const pushCache: WebpackLikePlugin = createRspackPlugin(unpluginFactory)
export default pushCache
