#!/usr/bin/env node
// `npm run demo`: a real Vite build of fixtures/app with the plugin (loaded from src by Vite's config
// loader, so no `npm run build` is needed), pushing to the local store ./.push-cache; then prints
// the manifest of the build that landed and a tree of the store.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { build } from 'vite'

const root = resolve(import.meta.dirname, '..')
const store = join(root, '.push-cache')
const app = 'inventory'
// The demo shows the local store, whatever the environment points to.
process.env.PUSH_CACHE_STORE = store
// The fixture's config imports the plugin's TypeScript sources without extensions, which Vite's
// default (bundling) config loader handles; its notice about the future native loader is noise here.
process.env.VITE_CONFIG_NATIVE_IGNORE_WARNING = 'true'

await build({ configFile: join(root, 'fixtures/app/vite.config.ts'), logLevel: 'info' })

const manifests = join(store, 'manifests', app)
const newest = (await readdir(manifests)).map(Number).sort((a, b) => b - a)[0]
const manifest = JSON.parse(await readFile(join(manifests, String(newest)), 'utf8'))
console.log(`\nManifest manifests/${app}/${newest} (build of ${new Date(manifest.timestamp * 1000).toISOString()}):`)
// The per-file details are columns parallel to `files`, headers as indexes into their tables.
const { details } = manifest
for (const [index, file] of manifest.files.entries()) {
  const size = details?.size[index]
  const cacheControl = details?.cacheControls[details.cacheControl[index]]
  console.log(`  ${file.padEnd(36)} ${String(size ?? '').padStart(6)} B  ${cacheControl ?? ''}`)
}
console.log(`\n${store}`)
await tree(store, '  ')

async function tree(dir, indent) {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      console.log(`${indent}${entry.name}/`)
      await tree(path, `${indent}  `)
    } else console.log(`${indent}${entry.name} (${(await stat(path)).size} B)`)
  }
}
