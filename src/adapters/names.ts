const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/**
 * Whether `fileName` was made by `template` and the template holds a hash: Rollup's
 * `js/[name]-[hash].js`, esbuild's `[dir]/[name]-[hash]` (to which esbuild adds the extension,
 * hence `suffix`). Every other placeholder matches anything; the hash matches `hash`, the
 * bundler's alphabet.
 */
export function madeByHashedTemplate(fileName: string, template: string, hash: string, suffix = ''): boolean {
  const parts = template.split(/(\[[a-z]+(?::\d+)?\])/i)
  if (!parts.some((part) => /^\[hash(:\d+)?\]$/i.test(part))) return false
  const source = parts.map((part, index) => (index % 2 === 0 ? escapeRegExp(part) : /^\[hash/i.test(part) ? hash : '.*')).join('')
  return new RegExp(`^${source}${suffix}$`).test(fileName)
}
