import { mkdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { type BuildFile, planUpload } from '../../src/core/push/plan'
import { inferRules, writeServerConfigs } from '../../src/core/serve/server-config'
import { flatLayout } from '../../src/core/store/layout'
import { silentLogger } from '../../src/core/util/logger'
import { resolveOptions } from '../../src/options'
import { tempDir } from '../helpers/fs'
import { HASHED_NAMES, UNHASHED_NAMES } from '../helpers/hashed-names'

/** Names the push's own tests read as hashed or not (test/unit/core-plan.test.ts), and the usual entrypoints. */
const NAMES = [
  ...HASHED_NAMES,
  ...UNHASHED_NAMES,
  'abcdef0123456789.js',
  'main.ABCDEF123',
  `x.${'a'.repeat(60)}_.js`,
  `${'Ab'.repeat(30)}-.js`,
  'fed-mods.json',
  'index.html',
  'app-info.json',
  'sub/app-info.beta.json',
  'LICENSE',
  'js/vendor.js.LICENSE.txt',
  'README',
  '.well-known/x.json',
]

/** What the push records for each of `relpaths`, as the CLI decides it from the names alone. */
function pushed(relpaths: readonly string[], files: Partial<BuildFile>[] = []) {
  const options = resolveOptions({ app: 'shop', timestamp: 1 }, {})
  const build = relpaths.map((relpath) => ({ relpath, path: relpath, size: 1, ...files.find((file) => file.relpath === relpath) }))
  const plan = planUpload(build, options, flatLayout)
  return [...plan.assets, ...plan.entrypoints].map(({ relpath, contentType, cacheControl }) => ({ relpath, contentType, cacheControl }))
}

describe('the header rules written for the web server', () => {
  it('give every file the headers the push decided, with no rule of its own, in nginx', () => {
    expect(inferRules(pushed(NAMES), ['fed-mods.json'], 'nginx').exceptions).toEqual([])
  })

  it('match the push on random names as well', () => {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-'
    // mulberry32: the same names on every run.
    let seed = 7
    const next = () => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return (t ^ (t >>> 14)) >>> 0
    }
    const token = (length: number) => Array.from({ length }, () => alphabet[next() % alphabet.length]).join('')
    const names = Array.from({ length: 3000 }, (_, index) => {
      const base = ['main', 'Main-Part', 'chunk.x', 'a-b'][index % 4]
      const separator = ['.', '-', '_'][next() % 3]
      return `dir/${base}${separator}${token(6 + (next() % 6))}.${['js', 'css', 'map'][next() % 3]}`
    })
    expect(inferRules(pushed(names), ['fed-mods.json'], 'nginx').exceptions).toEqual([])
  })

  it('stay the same from one build to the next, whatever the hashed names', () => {
    const first = inferRules(pushed(['fed-mods.json', 'index.html', 'js/main.3f2a1b9c0d.js', 'fonts/OpenSans-SemiBold.woff2']), ['fed-mods.json'], 'nginx')
    const second = inferRules(
      pushed(['fed-mods.json', 'index.html', 'js/main.77aa01bc3e.js', 'js/lazy-BFeHIACX.js', 'fonts/OpenSans-SemiBold.woff2']),
      ['fed-mods.json'],
      'nginx',
    )
    expect(second).toEqual(first)
  })

  it('give a file a rule of its own when the bundler, not its name, says it is hashed', () => {
    const files = pushed(['fed-mods.json', 'js/main.3f2a1b9c0d.js', 'js/12345678.js', 'about.html'], [{ relpath: 'js/12345678.js', immutable: true }])
    const rules = inferRules(files, ['fed-mods.json'], 'nginx')
    expect(rules.exceptions).toEqual([
      {
        relpath: 'js/12345678.js',
        contentType: 'text/javascript; charset=utf-8',
        cacheControl: files.find((file) => file.relpath === 'js/12345678.js')!.cacheControl,
      },
    ])
  })

  it('give hashed names with an ending the bundler did not mark immutable one rule, the same for every build', () => {
    const build = (hash: string) =>
      pushed(
        ['fed-mods.json', `js/main.${hash}.js`, `js/main.${hash}.js.LICENSE.txt`, `js/main.${hash}.js.map`, `js/vendor.${hash}.js.LICENSE.txt`],
        [`js/main.${hash}.js.LICENSE.txt`, `js/vendor.${hash}.js.LICENSE.txt`].map((relpath) => ({ relpath, immutable: false })),
      )
    for (const server of ['nginx', 'caddy'] as const) {
      const first = inferRules(build('3f2a1b9c0d'), ['fed-mods.json'], server)
      expect(first.exceptions).toEqual([])
      expect(inferRules(build('77aa01bc3e'), ['fed-mods.json'], server)).toEqual(first)
    }
  })

  it('leave files whose manifest records no headers (valpop) to the rules', () => {
    expect(inferRules([{ relpath: 'js/12345678.js' }, ...pushed(['fed-mods.json'])], ['fed-mods.json'], 'caddy').exceptions).toEqual([])
  })
})

describe('the server configs pop writes beside the builds', () => {
  it('are rewritten, with a warning to reload, only when the rules change', async () => {
    const dest = join(await tempDir(), 'www')
    await mkdir(join(dirname(dest), '.www.builds'))
    const warnings: string[] = []
    const logger = { ...silentLogger, warn: (message: string) => warnings.push(message) }
    const write = (relpaths: string[]) => writeServerConfigs(dest, 'shop', pushed(relpaths), ['fed-mods.json'], logger)

    expect(await write(['fed-mods.json', 'js/main.3f2a1b9c0d.js', 'about.html'])).toEqual({ exceptions: 0, reloadNeeded: false })
    const include = await readFile(join(dirname(dest), '.www.builds', 'server.nginx.conf'), 'utf8')
    expect(await write(['fed-mods.json', 'js/main.77aa01bc3e.js', 'js/lazy-BFeHIACX.js', 'about.html'])).toEqual({ exceptions: 0, reloadNeeded: false })
    expect(await readFile(join(dirname(dest), '.www.builds', 'server.nginx.conf'), 'utf8')).toBe(include)
    expect(warnings).toEqual([])

    const report = await writeServerConfigs(
      dest,
      'shop',
      [...pushed(['fed-mods.json', 'about.html']), { relpath: 'js/12345678.js', cacheControl: 'public, max-age=31536000, immutable' }],
      ['fed-mods.json'],
      logger,
    )
    expect(report).toEqual({ exceptions: 1, reloadNeeded: true })
    expect(warnings).toEqual([expect.stringMatching(/header rules for shop changed .*reload the web server \(`nginx -s reload`, `caddy reload`\)/)])
  })

  it('give Caddy headers it sets as the response is written, so a file that appears mid-switch still gets them and a 404 never does', async () => {
    const dest = join(await tempDir(), 'www')
    await mkdir(join(dirname(dest), '.www.builds'))
    await writeServerConfigs(dest, 'shop', pushed(['fed-mods.json', 'js/main.3f2a1b9c0d.js', 'about.html']), ['fed-mods.json'], silentLogger)
    const snippet = await readFile(join(dirname(dest), '.www.builds', 'server.caddy'), 'utf8')
    // A `file` matcher asks whether the file exists before file_server opens it: across a switch the two disagree.
    expect(snippet).not.toMatch(/^@\S+ file\b/m)
    const headerBlocks = snippet.split('\n').filter((line) => line.startsWith('header'))
    expect(headerBlocks.length).toBeGreaterThan(0)
    expect(snippet.match(/^ {2}defer$/gm)).toHaveLength(headerBlocks.length)
  })
})
