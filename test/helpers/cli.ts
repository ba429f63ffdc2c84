import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

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

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'push-cache-cli-'))
}

/** A directory with these files, as a build leaves it. */
export async function writeTree(root: string, files: Record<string, string>): Promise<string> {
  for (const [relpath, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, relpath)), { recursive: true })
    await writeFile(join(root, relpath), content)
  }
  return root
}

/** Every file below `root` (relpaths, sorted); `[]` when it does not exist. */
export async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1))
    .sort()
}

export const readText = (path: string): Promise<string> => readFile(path, 'utf8')

/** A small frontend build: an entrypoint, a hashed script, an index and a nested asset. */
export const BUILD = {
  'fed-mods.json': '{"my-app":{"entry":["/apps/my-app/js/main.1a2b3c4d.js"]}}',
  'index.html': '<!doctype html><script src="js/main.1a2b3c4d.js"></script>',
  'js/main.1a2b3c4d.js': 'console.log("hello")',
  'img/logo.svg': '<svg/>',
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
