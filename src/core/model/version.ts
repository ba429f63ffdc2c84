declare const __PACKAGE_VERSION__: string | undefined

/** Replaced at build time by tsup; `dev` when running from source. */
export const VERSION = typeof __PACKAGE_VERSION__ === 'string' ? __PACKAGE_VERSION__ : 'dev'
export const GENERATOR = `unplugin-push-cache@${VERSION}`
