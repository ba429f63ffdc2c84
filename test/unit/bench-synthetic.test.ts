import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without types
import { ensureBuilds, listFiles } from '../../scripts/bench/synthetic.mjs'

const KiB = 1024
/** The bench's shapes at a few hundred kilobytes. */
const sizes = {
  frontend: { files: 60, small: [256, 4 * KiB], medium: { count: 1, sizes: [16 * KiB, 32 * KiB] }, big: [64 * KiB, 48 * KiB], changedShare: 0.1 },
  valkey: { files: 40, small: [300, 2 * KiB], medium: { count: 0, sizes: [0, 0] }, big: [], changedShare: 0 },
  big: { count: 2, size: 64 * KiB },
}

interface Built {
  dir: string
  files: number
  bytes: number
  changed?: number
}
type Builds = Record<'a' | 'b' | 'valkey' | 'big', Built>

const roots: string[] = []
afterAll(() => Promise.all(roots.map((root) => rm(root, { recursive: true, force: true }))))

async function generate(seed: string): Promise<Builds> {
  const root = await mkdtemp(join(tmpdir(), 'push-cache-bench-'))
  roots.push(root)
  return ensureBuilds(root, { seed, app: 'bench', sizes, big: true })
}

/** relpath → SHA-256 of the content, for every file of a build. */
async function fingerprint({ dir }: Built): Promise<Record<string, string>> {
  const files: string[] = (await listFiles(dir)).sort()
  const sha256 = async (relpath: string) =>
    createHash('sha256')
      .update(await readFile(join(dir, relpath)))
      .digest('hex')
  return Object.fromEntries(await Promise.all(files.map(async (relpath) => [relpath, await sha256(relpath)])))
}

describe('the bench synthetic builds', () => {
  it('are the same, byte for byte, for the same seed, and differ for another', async () => {
    const [first, second, other] = await Promise.all([generate('seed-1'), generate('seed-1'), generate('seed-2')])
    for (const build of ['a', 'b', 'valkey', 'big'] as const) expect(await fingerprint(second[build])).toEqual(await fingerprint(first[build]))
    expect(await fingerprint(other.a)).not.toEqual(await fingerprint(first.a))
  })

  it('make a next build in which the changed share of files differ: hashed ones under new names, unhashed ones in place', async () => {
    const { a, b } = await generate('seed-1')
    const [before, after] = await Promise.all([fingerprint(a), fingerprint(b)])
    const renamed = Object.keys(after).filter((relpath) => !(relpath in before))
    const rewritten = Object.keys(after).filter((relpath) => relpath in before && before[relpath] !== after[relpath])
    expect(Object.keys(after)).toHaveLength(60)
    expect(b.changed).toBe(6)
    expect(renamed.length + rewritten.length).toBe(6)
    expect(renamed).toContainEqual(expect.stringMatching(/^js\/entry-[0-9a-f]{8}\.js$/))
    expect(rewritten).toEqual(expect.arrayContaining(['fed-mods.json', 'index.html', 'app-info.json']))
    expect(after['fed-mods.json']).toBeDefined()
  })
})
