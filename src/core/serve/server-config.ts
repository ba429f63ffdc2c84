import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { types as extensionTypes } from 'mime-types'
import { contentTypeOf } from '../push/plan'
import type { Logger } from '../util/logger'
import { buildsDirOf, type SERVER_CONFIG_FILES } from './served-dir'

/**
 * The headers the push decided, served by nginx and Caddy: `pop` and `watch` write, into the builds
 * directory beside `dest`, an nginx include and a Caddyfile snippet that give every file the
 * Content-Type and Cache-Control its manifest entry records.
 *
 * A web server reads its configuration only when it starts or reloads, while `dest` switches to a
 * new build at any moment. So the configuration says how a URL's headers follow from its path, as
 * the push decides them: one Content-Type per extension (the push's MIME table, whole), a short
 * cache for entrypoints and `index.html`/`fed-mods.json`/`app-info*.json`, `immutable` for names
 * holding a content hash, a default for the rest. Those rules are the same for every build of an
 * app, so the file stays the same and a switch needs no reload. Each pop checks them against every
 * manifest entry; a file they would serve otherwise (a bundler-hashed name the name test does not
 * see, a user's glob rule) gets a rule of its own, and only when that changes the file must the
 * server reload: the pop says so.
 */

/** A file `dest` serves, with the headers its manifest entry records (unset: not recorded, nothing to match). */
export interface ServedHeaders {
  relpath: string
  contentType?: string
  cacheControl?: string
}

interface Dialect {
  file: (typeof SERVER_CONFIG_FILES)[number]
  /** The hash token of a name with a content hash (a `.` or `-` and the token), in this server's regex flavour; tested here with JavaScript's, which agrees on it. */
  hashToken: string
  render(rules: HeaderRules, app: string): string
}

/** A file whose manifest entry records its Cache-Control. */
interface RecordedCache {
  relpath: string
  cacheControl: string
}

interface CacheRule {
  pattern: string
  value: string
}

interface HeaderRules {
  /** Content-Type by lower-case extension (the last `.` of the last segment), as nginx and Caddy read it. */
  types: Map<string, string>
  /** Most precise first: the first that matches `/<relpath>` wins. */
  cache: CacheRule[]
  defaultCache?: string
  /** Files the rules above would serve otherwise: exact paths, with both headers. */
  exceptions: { relpath: string; contentType: string; cacheControl?: string }[]
  /** Files the rules would serve otherwise, whose path or headers no config can carry (quotes, `$`, braces): served with the rules' headers. */
  inexpressible: string[]
}

const DEFAULT_TYPE = 'application/octet-stream'

/** Bytes of a name a hash function writes: contentTypeOf's `looksRandom`, as a lookahead at the token's first character. */
const RANDOM_TOKEN = [
  '(?=[A-Za-z0-9_-]*[A-Za-z][A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*[A-Za-z])',
  '(?=[A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*[A-Za-z][A-Za-z0-9_-]*[0-9])',
  '(?=[A-Za-z_-]*\\.)(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?![A-Z]?[a-z]+(?:[A-Z][a-z]+)*(?:[-_][A-Z]?[a-z]+(?:[A-Z][a-z]+)*)*\\.)',
].join('|')

/**
 * push/plan.ts's `hasContentHash` as one PCRE (nginx): a `.`-delimited token after the first, or
 * the 8 characters after a `-` that end a token, that looks random. Equal on every name (a unit test
 * holds them together).
 */
const HASH_TOKEN_PCRE = `(?:\\.(?:${RANDOM_TOKEN})[A-Za-z0-9_-]{8,64}|-(?:${RANDOM_TOKEN})[A-Za-z0-9_-]{8})`

/**
 * Caddy's regexes are Go's (RE2: no lookahead), so it gets a wider net: a `.`-delimited token after
 * the first that mixes letters and digits, or 8 characters after a `-` ending a token that hold a
 * digit or a capital. Where it is wrong for a file of the build, that file gets a rule of its own.
 */
const HASH_TOKEN_RE2 = `(?:\\.[A-Za-z0-9_-]*(?:[A-Za-z][A-Za-z0-9_-]*[0-9]|[0-9][A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]*|-(?:${Array.from(
  { length: 8 },
  (_, index) => `[A-Za-z0-9_-]{${index}}[A-Z0-9][A-Za-z0-9_-]{${7 - index}}`,
).join('|')}))`

/** The push's short-cached names (plan.ts's `SHORT_CACHED`) and the entrypoints. */
function shortPattern(entrypoints: readonly string[]): string {
  const names = 'index\\.html|fed-mods\\.json|app-info[^/]*\\.json'
  const others = entrypoints.filter((relpath) => !new RegExp(`(?:^|/)(?:${names})$`).test(relpath))
  return `/(?:${names}${others.map((relpath) => `|${escapeRegex(relpath)}`).join('')})$`
}

/** Punctuation escaped with a backslash (PCRE, RE2 and JavaScript agree on that), a space as `\x20`, the rest as is. */
function escapeRegex(text: string): string {
  return text.replace(/[!-,.:-@[-^`{-~ ]/g, (char) => (char === ' ' ? '\\x20' : `\\${char}`))
}

const extensionOf = (relpath: string): string => {
  const name = posix.basename(relpath)
  const dot = name.lastIndexOf('.')
  return dot < 0 ? '' : name.slice(dot + 1).toLowerCase()
}

/** Every extension of the push's MIME table, with the Content-Type the push gives it: the same for every build. */
function typeTable(): Map<string, string> {
  return new Map(Object.keys(extensionTypes).map((extension) => [extension, contentTypeOf(`x.${extension}`)]))
}

/** The value most of `values` hold; undefined for none. */
function mostCommon(values: readonly string[]): string | undefined {
  const counts = new Map<string, number>()
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1)
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0]
}

/** Values a server config can carry inside double quotes without escapes of its own (`$` is nginx's variable, `{` Caddy's placeholder). */
const renderable = (value: string | undefined) => value === undefined || !/["\\${}`]|[^\x20-\x7e]/.test(value)

/** The rules that give `files` their recorded headers in `server`'s regex flavour; files they miss become exceptions. */
export function inferRules(files: readonly ServedHeaders[], entrypoints: readonly string[], server: 'nginx' | 'caddy'): HeaderRules {
  const { hashToken } = DIALECTS[server]
  const hashed = `${hashToken}\\.[^/]*$`
  const classes = [shortPattern(entrypoints), hashed].map((pattern) => ({ pattern, regex: new RegExp(pattern), files: [] as RecordedCache[] }))
  const rest: string[] = []
  const known: ServedHeaders[] = []
  const inexpressible: string[] = []
  for (const file of files) {
    if (renderable(file.cacheControl) && renderable(file.contentType)) known.push(file)
    else inexpressible.push(file.relpath)
  }
  for (const file of known) {
    if (file.cacheControl === undefined) continue
    const match = classes.find((rule) => rule.regex.test(`/${file.relpath}`))
    if (match) match.files.push({ relpath: file.relpath, cacheControl: file.cacheControl })
    else rest.push(file.cacheControl)
  }
  const [short, hashedFiles] = classes.map(({ pattern, files }) => {
    const value = mostCommon(files.map((file) => file.cacheControl))
    return value === undefined ? [] : [{ pattern, value }]
  }) as [CacheRule[], CacheRule[]]
  const cache = [...short, ...tailRules(classes[1]!.files, hashToken, hashedFiles[0]?.value), ...hashedFiles]
  // A value a class above claims (`immutable` on a name the name test missed) is that class's exception, not the default.
  const unclaimed = rest.filter((value) => ![...short, ...hashedFiles].some((rule) => rule.value === value))
  const rules: HeaderRules = { types: typeTable(), cache, defaultCache: mostCommon(unclaimed.length > 0 ? unclaimed : rest), exceptions: [], inexpressible }
  // Compiled once: every rule is tested against every file of the build.
  const compiled = cache.map((rule) => ({ regex: new RegExp(rule.pattern), value: rule.value }))
  for (const file of known) {
    const served = headersOf(rules, compiled, file.relpath)
    const contentType = file.contentType ?? served.contentType
    const cacheControl = file.cacheControl ?? served.cacheControl
    if (contentType === served.contentType && cacheControl === served.cacheControl) continue
    // Non-ASCII is fine in a path (both servers match its UTF-8 bytes), not in a header.
    if (renderable(file.relpath.replace(/[^\x20-\x7e]/g, '_'))) rules.exceptions.push({ relpath: file.relpath, contentType, cacheControl })
    else rules.inexpressible.push(file.relpath)
  }
  rules.exceptions.sort((a, b) => (a.relpath < b.relpath ? -1 : 1))
  return rules
}

/**
 * Hashed names whose last two extensions (`.js.map`, `.LICENSE.txt`) the push gives other headers
 * than the rest: webpack does not mark `main.3f2a1b9c0d.js.LICENSE.txt` immutable, so the plugin
 * gives it the default. One rule per such ending stays the same from build to build, where each
 * build's new names would otherwise need rules of their own.
 */
function tailRules(files: readonly RecordedCache[], hashToken: string, hashedValue: string | undefined): CacheRule[] {
  const byTail = new Map<string, string[]>()
  const hash = new RegExp(hashToken)
  for (const file of files) {
    const tail = /(?:\.[^./]+){2}$/.exec(posix.basename(file.relpath))?.[0]
    // A tail holding the hash itself (`.3f2a1b9c0d.js`) changes with every build: no rule for it.
    if (tail === undefined || hash.test(tail)) continue
    byTail.set(tail, [...(byTail.get(tail) ?? []), file.cacheControl])
  }
  return [...byTail]
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .flatMap(([tail, values]) => {
      const value = mostCommon(values)
      return value === undefined || value === hashedValue ? [] : [{ pattern: `${hashToken}(?:\\.[^/]*)?${escapeRegex(tail)}$`, value }]
    })
}

/** What a server with `rules` sends for `relpath` (exceptions aside). */
function headersOf(rules: HeaderRules, cache: readonly { regex: RegExp; value: string }[], relpath: string): { contentType: string; cacheControl?: string } {
  const url = `/${relpath}`
  return {
    contentType: rules.types.get(extensionOf(relpath)) ?? DEFAULT_TYPE,
    cacheControl: cache.find((rule) => rule.regex.test(url))?.value ?? rules.defaultCache,
  }
}

/** Content types with their extensions, grouped and sorted: one line each. */
function typesByValue(types: Map<string, string>): [string, string[]][] {
  const grouped = new Map<string, string[]>()
  for (const [extension, type] of types) grouped.set(type, [...(grouped.get(type) ?? []), extension])
  return [...grouped].sort((a, b) => (a[0] < b[0] ? -1 : 1))
}

const nginx: Dialect = {
  file: 'server.nginx.conf',
  hashToken: HASH_TOKEN_PCRE,
  render(rules, app) {
    const addCache = (value: string | undefined) => (value === undefined ? '' : ` add_header Cache-Control "${value}";`)
    return [
      `# Written by push-cache pop/watch for ${app}: the Content-Type and Cache-Control the push recorded for each file.`,
      '# Include it inside the location that serves the app, and do not edit it (every pop rewrites it):',
      `#   location /apps/${app}/ { include /srv/www/apps/.${app}.builds/${this.file}; }`,
      '# It changes only when the rules change (the pop then says to reload nginx), not with every build.',
      'types_hash_max_size 4096;',
      'types {',
      ...typesByValue(rules.types).map(([type, extensions]) => `  "${type}" ${extensions.join(' ')};`),
      '}',
      `default_type ${DEFAULT_TYPE};`,
      ...(rules.defaultCache === undefined ? [] : [`add_header Cache-Control "${rules.defaultCache}";`]),
      // Nested locations are searched before the server's, so the recipe's rule for dot-files is repeated here.
      'location ~ /\\. { return 404; }',
      ...rules.exceptions.map(
        (file) => `location ~ "/${escapeRegex(file.relpath)}$" { types { } default_type "${file.contentType}";${addCache(file.cacheControl)} }`,
      ),
      ...rules.cache.map((rule) => `location ~ "${rule.pattern}" {${addCache(rule.value)} }`),
      '',
    ].join('\n')
  },
}

const caddy: Dialect = {
  file: 'server.caddy',
  hashToken: HASH_TOKEN_RE2,
  render(rules, app) {
    const id = `push_cache_${app.replace(/[^A-Za-z0-9]/g, '_')}`
    // Deferred, the headers are set as the response is written: never on a 404 or another error (a
    // 404 must not be cached for a year), whether or not the file existed when the request came in
    // (a `file` matcher asked that before a switch, file_server answered after it). Deferred
    // handlers apply innermost first, so the first written wins: most precise first.
    const header = (matcher: string, fields: Record<string, string | undefined>) => [
      `header${matcher} {`,
      ...Object.entries(fields).flatMap(([field, value]) => (value === undefined ? [] : [`  ${field} "${value}"`])),
      '  defer',
      '}',
    ]
    return [
      `# Written by push-cache pop/watch for ${app}: the Content-Type and Cache-Control the push recorded for each file.`,
      '# Import it in a route ahead of file_server, and do not edit it (every pop rewrites it):',
      `#   route /apps/${app}/* { import /srv/www/apps/.${app}.builds/${this.file} }`,
      '# It changes only when the rules change (the pop then says to reload Caddy), not with every build.',
      ...rules.exceptions.flatMap((file, index) => [
        `@${id}_path${index} path "*/${file.relpath.replace(/"/g, '\\"')}"`,
        ...header(` @${id}_path${index}`, { 'Content-Type': file.contentType, 'Cache-Control': file.cacheControl }),
      ]),
      ...rules.cache.flatMap((rule, index) => [
        `@${id}_cache${index} path_regexp \`${rule.pattern}\``,
        ...header(` @${id}_cache${index}`, { 'Cache-Control': rule.value }),
      ]),
      ...typesByValue(rules.types).flatMap(([type, extensions], index) => [
        `@${id}_type${index} path ${extensions.map((extension) => `*.${extension}`).join(' ')}`,
        ...header(` @${id}_type${index}`, { 'Content-Type': type }),
      ]),
      ...header('', { 'Content-Type': DEFAULT_TYPE, 'Cache-Control': rules.defaultCache }),
      '',
    ].join('\n')
  },
}

const DIALECTS = { nginx, caddy }

export interface ServerConfigReport {
  /** Files whose headers the path rules miss, each with a rule of its own (nginx's count; Caddy's net is wider). */
  exceptions: number
  /** Whether a config already read by a running server changed: it serves the new rules only once reloaded. */
  reloadNeeded: boolean
}

/**
 * Writes the nginx include and the Caddy snippet for what `dest` serves now (call it before the
 * switch, so that a reload after the pop reads the rules of the build it serves). A file is
 * replaced only when its text changes, in one rename: a server reloading meanwhile reads the old
 * rules or the new ones.
 */
export async function writeServerConfigs(
  dest: string,
  app: string,
  files: readonly ServedHeaders[],
  entrypoints: readonly string[],
  logger: Logger,
): Promise<ServerConfigReport> {
  const report: ServerConfigReport = { exceptions: 0, reloadNeeded: false }
  const changed: string[] = []
  let inexpressible: string[] = []
  for (const [server, dialect] of Object.entries(DIALECTS) as [keyof typeof DIALECTS, Dialect][]) {
    const rules = inferRules(files, entrypoints, server)
    if (server === 'nginx') {
      report.exceptions = rules.exceptions.length
      inexpressible = rules.inexpressible
    }
    const path = join(buildsDirOf(dest), dialect.file)
    const text = dialect.render(rules, app)
    const previous = await readFile(path, 'utf8').catch(() => undefined)
    if (previous === text) continue
    const temporary = `${path}.${process.pid}.tmp`
    await writeFile(temporary, text).catch(async (error) => {
      await rm(temporary, { force: true })
      throw error
    })
    await rename(temporary, path)
    if (previous !== undefined) changed.push(path)
  }
  if (inexpressible.length > 0)
    logger.warn(
      `${inexpressible.length} files of ${app} (${inexpressible[0]}, ...) need headers of their own, but their path or headers hold quotes, \`$\`, braces or backticks (or a header non-ASCII characters) that no server config can carry: they are served with the rules' headers`,
    )
  if (changed.length > 0) {
    report.reloadNeeded = true
    logger.warn(
      `The header rules for ${app} changed (${report.exceptions} files with rules of their own): reload the web server (\`nginx -s reload\`, \`caddy reload\`) so that it serves them. Updated ${changed.join(' and ')}.`,
    )
  }
  return report
}
