import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir, writeTree } from './fs'

export { tree, writeTree } from './fs'

/** The built bin, as `npm i` installs it: the tests run what users run (`npm run build` first). */
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * Runs `node dist/cli.js ...args` in a child process. The environment is built from scratch (no
 * PUSH_CACHE_* or AWS_* of the machine leaks in) and says CI=true unless `env` overrides it.
 */
export function runCli(args: readonly string[], { env = {}, cwd }: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliResult> {
  const base = { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...base, ...env }, cwd, timeout: 60_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr })
    })
  })
}

export const readText = (path: string): Promise<string> => readFile(path, 'utf8')

/**
 * The args of `container` in a manifest of deploy/. Each is written as one flow sequence on one
 * line, so that it can be read here without a YAML parser and run as written.
 */
export async function deployArgs(file: string, container: string): Promise<string[]> {
  const manifest = await readText(join('deploy', file))
  const at = manifest.search(new RegExp(`^\\s+- name: ${container}$`, 'm'))
  const args = at < 0 ? null : /^\s+args: (\[.*\])$/m.exec(manifest.slice(at))
  if (!args) throw new Error(`deploy/${file} has no container ${container} with args on one line`)
  return JSON.parse(args[1]!) as string[]
}

/** A small frontend build: an entrypoint, a hashed script, an index and a nested asset. */
export const BUILD = {
  'fed-mods.json': '{"my-app":{"entry":["/apps/my-app/js/main.1a2b3c4d.js"]}}',
  'index.html': '<!doctype html><script src="js/main.1a2b3c4d.js"></script>',
  'js/main.1a2b3c4d.js': 'console.log("hello")',
  'img/logo.svg': '<svg/>',
}

/** A fresh work directory holding BUILD in `dist/`, for one test. */
export async function workspaceWithBuild(): Promise<{ work: string; dist: string }> {
  const work = await tempDir()
  return { work, dist: await writeTree(join(work, 'dist'), BUILD) }
}

/** What `tree(work)` shows when nothing was written beside the build in `dist/`. */
export const ONLY_THE_BUILD = Object.keys(BUILD)
  .map((relpath) => `dist/${relpath}`)
  .sort()

/** A loopback port nothing listens on: taken from the kernel, then released. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready))
  const { port } = server.address() as { port: number }
  await new Promise((closed) => server.close(closed))
  return port
}

/** stdout holds exactly one JSON document and nothing else. */
export function parseReport(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n')
  if (lines.length !== 1) throw new Error(`expected one JSON line on stdout, got ${lines.length}:\n${stdout}`)
  return JSON.parse(lines[0]!) as Record<string, unknown>
}
