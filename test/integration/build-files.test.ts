// What is read from a build directory: nothing outside it, whatever links it holds.
import { execFileSync } from 'node:child_process'
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { rollup } from 'rollup'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { collectFiles } from '../../src/core/push/collect-files'
import type { Logger } from '../../src/core/util/logger'
import rollupPlugin from '../../src/rollup'
import { parseReport, runCli, tree } from '../helpers/cli'
import { tempDir, writeTree } from '../helpers/fs'

/** A logger that keeps the warnings, as a user reads them. */
function recordingLogger(): Pick<Logger, 'warn'> & { warnings: string[] } {
  const warnings: string[] = []
  return { warnings, warn: (message) => warnings.push(message) }
}

let work: string
let dist: string
/** A file and a directory outside the build, standing in for /etc/passwd and /etc. */
let secret: string
let etc: string
beforeEach(async () => {
  work = await tempDir()
  dist = await writeTree(join(work, 'dist'), { 'fed-mods.json': '{}', 'js/main.js': 'main' })
  secret = join(work, 'passwd')
  await writeFile(secret, 'root:x:0:0:root:/root:/bin/bash\n')
  etc = await writeTree(join(work, 'etc'), { hostname: 'build-host' })
  // The walk failed on this before: a dangling link in the directory a link led into.
  await symlink(join(etc, 'gone'), join(etc, 'dangling'))
})

const relpaths = async (root: string, logger?: Pick<Logger, 'warn'>, emitted?: string[]) =>
  (await collectFiles(root, emitted, logger)).map((file) => file.relpath).sort()

describe('collectFiles', () => {
  it('skips links that lead outside the output directory, file or directory, and names them', async () => {
    await symlink(secret, join(dist, 'js/passwd.js'))
    await symlink(etc, join(dist, 'config'))
    await symlink('../../passwd', join(dist, 'js/relative.js'))
    const logger = recordingLogger()
    expect(await relpaths(dist, logger)).toEqual(['fed-mods.json', 'js/main.js'])
    expect(logger.warnings.sort()).toEqual([
      `skipped config: it resolves to ${etc}, outside the output directory ${dist}; it is not pushed`,
      `skipped js/passwd.js: it resolves to ${secret}, outside the output directory ${dist}; it is not pushed`,
      `skipped js/relative.js: it resolves to ${secret}, outside the output directory ${dist}; it is not pushed`,
    ])
  })

  it('skips the same links when the bundler names them, and a path that climbs out', async () => {
    await symlink(secret, join(dist, 'js/passwd.js'))
    await symlink(etc, join(dist, 'config'))
    const logger = recordingLogger()
    expect(await relpaths(dist, logger, ['js/main.js', 'js/passwd.js', 'config/hostname', '../passwd', secret])).toEqual(['js/main.js'])
    expect(logger.warnings).toHaveLength(4)
    expect(logger.warnings.join('\n')).not.toContain('build-host')
  })

  it('holds a relpath per file, its path made from the root when asked, as the walk and the bundler find it', async () => {
    for (const emitted of [undefined, ['js/main.js', 'fed-mods.json']]) {
      const files = await collectFiles(dist, emitted)
      const main = files.find((file) => file.relpath === 'js/main.js')!
      expect(main.path).toBe(join(dist, 'js', 'main.js'))
      expect(await readFile(main.path, 'utf8')).toBe('main')
      // A path of its own per file was ~80 B more, 8 MB for a 100,000-file build held through its push.
      expect(Object.keys(main)).not.toContain('path')
    }
  })

  it('follows links that stay inside: a file under two names, a directory under two names', async () => {
    await symlink('main.js', join(dist, 'js/latest.js'))
    await symlink('js', join(dist, 'scripts'))
    const logger = recordingLogger()
    const files = await collectFiles(dist, undefined, logger)
    expect(files.map((file) => file.relpath).sort()).toEqual(['fed-mods.json', 'js/latest.js', 'js/main.js', 'scripts/latest.js', 'scripts/main.js'])
    expect(files.find((file) => file.relpath === 'scripts/latest.js')).toMatchObject({ size: 4 })
    expect(logger.warnings).toEqual([])
  })

  it('returns on link loops, skipping them by name', async () => {
    await mkdir(join(dist, 'a/b'), { recursive: true })
    await symlink('..', join(dist, 'a/b/up'))
    await symlink('.', join(dist, 'here'))
    await symlink('self.js', join(dist, 'self.js'))
    await symlink('pong.js', join(dist, 'ping.js'))
    await symlink('ping.js', join(dist, 'pong.js'))
    const logger = recordingLogger()
    expect(await relpaths(dist, logger)).toEqual(['fed-mods.json', 'js/main.js'])
    expect(logger.warnings.sort()).toEqual([
      'skipped a/b/up: a symbolic link loop (to a, which contains it); it is not pushed',
      'skipped here: a symbolic link loop (to ., which contains it); it is not pushed',
      'skipped ping.js: a symbolic link loop; it is not pushed',
      'skipped pong.js: a symbolic link loop; it is not pushed',
      'skipped self.js: a symbolic link loop; it is not pushed',
    ])
  })

  describe('special files', () => {
    let server: Server | undefined
    afterEach(() => void server?.close())

    it('skips FIFOs and sockets (reading a FIFO would hang the push) and dangling links', async () => {
      execFileSync('mkfifo', [join(dist, 'pipe')])
      server = createServer()
      await new Promise<void>((listening) => server!.listen(join(dist, 'app.sock'), listening))
      await symlink('missing.js', join(dist, 'js/dangling.js'))
      const logger = recordingLogger()
      expect(await relpaths(dist, logger)).toEqual(['fed-mods.json', 'js/main.js'])
      expect(logger.warnings.sort()).toEqual([
        'skipped app.sock: a socket; it is not pushed',
        'skipped js/dangling.js: a symbolic link to nothing; it is not pushed',
        'skipped pipe: a FIFO; it is not pushed',
      ])
    })
  })

  it.each([
    ['a backslash', 'js\\evil.js', 'contains a backslash'],
    ['a newline', 'js/forged\nline.js', 'contains a control character'],
    ['an escape sequence', 'js/\u001b[31mred.js', 'contains a control character'],
  ])('refuses a file whose name holds %s, before anything is pushed', async (_, name, problem) => {
    await writeFile(join(dist, name), 'x')
    await expect(collectFiles(dist)).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
      message: expect.stringContaining(`${JSON.stringify(name)} in ${dist}: its path ${problem}`),
    })
  })
})

describe('the CLI and the plugins', () => {
  it('populate pushes what is inside and warns about each link that leads out', async () => {
    await symlink(secret, join(dist, 'js/passwd.js'))
    await symlink(etc, join(dist, 'config'))
    const store = join(work, 'store')
    const result = await runCli(['populate', dist, '--app', 'my-app', '--store', store, '--json'])
    expect(result.code, result.stderr).toBe(0)
    expect(parseReport(result.stdout)).toMatchObject({ ok: true, uploaded: 2 })
    expect(result.stderr).toContain(`warning: skipped js/passwd.js: it resolves to ${secret}, outside the output directory ${dist}`)
    expect(result.stderr).toContain(`warning: skipped config: it resolves to ${etc}`)
    expect((await tree(store)).filter((path) => path.startsWith('data/'))).toEqual(['data/my-app/fed-mods.json', 'data/my-app/js/main.js'])
  })

  it('a bundler plugin skips them too', async () => {
    const src = await writeTree(join(work, 'src'), { 'main.js': 'console.log(1)' })
    const store = join(work, 'store')
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
    let logged: string
    try {
      const bundle = await rollup({
        input: join(src, 'main.js'),
        onLog() {},
        plugins: [
          // Another plugin that leaves a link in the output, as copy plugins can.
          { name: 'leaves-a-link', writeBundle: () => symlink(secret, join(dist, 'passwd.js')) },
          rollupPlugin({ app: 'my-app', store, timestamp: 100 }),
        ],
      })
      await bundle.write({ dir: dist })
      await bundle.close()
    } finally {
      logged = stderr.mock.calls.map(([chunk]) => String(chunk)).join('')
      stderr.mockRestore()
    }
    expect(logged).toContain(`[push-cache:rollup] warning: skipped passwd.js: it resolves to ${secret}`)
    expect(await tree(join(store, 'data/my-app'))).toEqual(['fed-mods.json', 'js/main.js', 'main.js'])
    expect(await readFile(join(store, 'data/my-app/main.js'), 'utf8')).toContain('console.log')
  })
})
