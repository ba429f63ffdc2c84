// A build of tens of thousands of files, whose manifest the old 16 MiB limit refused: pushed,
// pushed again without writing a file, listed, pruned and popped, on the local store.
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { prune } from '../../src/core/prune/prune'
import { collectFiles } from '../../src/core/push/collect-files'
import { populate } from '../../src/core/push/populate'
import { pop } from '../../src/core/serve/pop'
import { listBuilds } from '../../src/core/store/builds'
import { resolveOptions } from '../../src/options'
import { createLocalStore } from '../../src/stores/local'
import { tempDir } from '../helpers/fs'

const FILES = 30_000
const PER_DIRECTORY = 1_000
const NOW = 1_700_000_000
const app = 'big-app'

/** Long names, as deep monorepo builds have them: ~560 B a path, so the list of paths alone passes 16 MiB. */
async function writeBigBuild(root: string): Promise<void> {
  await writeFile(join(root, 'fed-mods.json'), '{}')
  for (let directory = 0; directory < FILES / PER_DIRECTORY; directory++) {
    const path = join(root, `packages-${'x'.repeat(140)}-${directory}`, `components-${'y'.repeat(200)}`)
    await mkdir(path, { recursive: true })
    await Promise.all(
      Array.from({ length: PER_DIRECTORY - (directory === 0 ? 1 : 0) }, (_, file) =>
        writeFile(join(path, `module-${'z'.repeat(180)}-${file}.js`), `${directory}/${file}`),
      ),
    )
  }
}

describe(`a build of ${FILES.toLocaleString('en')} files`, () => {
  it('pushes, pushes again writing nothing, lists, prunes and pops', async () => {
    const source = await tempDir()
    await writeBigBuild(source)
    const root = await tempDir()
    const store = createLocalStore(root)
    const push = async (timestamp: number) =>
      populate({ store, options: resolveOptions({ app, store: root, timestamp, concurrency: 32 }, {}), files: await collectFiles(source) })

    expect(await push(NOW)).toMatchObject({ uploaded: FILES })
    // More than the 16 MiB a manifest was allowed before: every push after this one rewrote everything.
    expect((await stat(join(root, 'manifests', app, String(NOW)))).size).toBeGreaterThan(16 * 1024 * 1024)
    expect(await push(NOW + 60)).toMatchObject({ uploaded: 0, unchanged: FILES })

    const builds = await listBuilds(store, app)
    expect(builds.map(({ timestamp, files }) => ({ timestamp, files: files.length }))).toEqual([
      { timestamp: NOW + 60, files: FILES },
      { timestamp: NOW, files: FILES },
    ])
    const pruned = await prune({ store, app, rule: { now: NOW + 3600, olderThanSeconds: 60, keep: 1 }, entrypoints: ['fed-mods.json'] })
    expect(pruned).toMatchObject({ builds: [NOW], keys: [], kept: 1 })

    const dest = join(await tempDir(), 'www')
    await pop({ store, app, dest, concurrency: 32 })
    expect(await readdir(dest, { recursive: true, withFileTypes: true }).then((entries) => entries.filter((entry) => entry.isFile()).length)).toBe(FILES)
  }, 180_000)
})
