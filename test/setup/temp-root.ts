import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The directory every test's temporary directory is made in (see `tempDir`), removed after the run. */
    tempRoot: string
  }
}

/**
 * One directory per run for the tests' temporary directories, removed once the run ends: tests
 * that each made their own under the system's and left them there filled a disk over a few
 * hundred runs (~10,000 directories and ~7 GB a full run).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = await mkdtemp(join(tmpdir(), 'push-cache-tests-'))
  project.provide('tempRoot', root)
  return () => rm(root, { recursive: true, force: true })
}
