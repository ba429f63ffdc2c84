import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { inject } from 'vitest'

/** A new empty directory, removed with the others when the test run ends (see test/setup/temp-root.ts). */
export function tempDir(): Promise<string> {
  return mkdtemp(join(inject('tempRoot'), 'push-cache-'))
}

/** A directory with these files, as a build leaves it. */
export async function writeTree(root: string, files: Record<string, string | Uint8Array>): Promise<string> {
  for (const [relpath, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, relpath)), { recursive: true })
    await writeFile(join(root, relpath), content)
  }
  return root
}

async function filesBelow(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1))
}

/** Every file below `root` (relpaths, sorted); `[]` when it does not exist. */
export async function tree(root: string): Promise<string[]> {
  return (await filesBelow(root)).sort()
}

/** Every file under `root` with its text, keyed by relpath. */
export async function readTree(root: string): Promise<Record<string, string>> {
  const relpaths = await filesBelow(root)
  return Object.fromEntries(await Promise.all(relpaths.map(async (relpath) => [relpath, await readFile(join(root, relpath), 'utf8')])))
}
