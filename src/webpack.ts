import { createWebpackPlugin } from 'unplugin'
import { unpluginFactory, type WebpackLikePlugin } from './plugin'

const pushCache: WebpackLikePlugin = createWebpackPlugin(unpluginFactory)
export default pushCache
