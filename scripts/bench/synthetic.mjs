// Deterministic synthetic builds for `npm run bench`: the shape of a real frontend build, every byte
// a function of the seed, so that two machines (or two runs) push exactly the same data.
import { createCipheriv, createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'

const KiB = 1024
const MiB = 1024 * KiB
/** Bump when the generator changes what it writes, so that cached data is made anew. */
const GENERATOR_VERSION = 1

/**
 * The full sizes: a ~2,000-file frontend (~70 MB, two files over 20 MB) and its next build with 5% of
 * the files changed; 10,000 small files for Valkey (~43 MB); ten 100 MiB files (1 GiB) for memory.
 */
export const FULL = {
  frontend: { files: 2000, small: [256, 40 * KiB], medium: { count: 6, sizes: [512 * KiB, 3 * MiB] }, big: [23 * MiB, 21 * MiB], changedShare: 0.05 },
  valkey: { files: 10_000, small: [300, 17 * KiB], medium: { count: 0, sizes: [0, 0] }, big: [], changedShare: 0 },
  big: { count: 10, size: 100 * MiB },
}

/** `--quick`: the same shapes, small enough for a smoke check (still one file above the 8 MiB multipart threshold). */
export const QUICK = {
  frontend: { files: 300, small: [256, 32 * KiB], medium: { count: 2, sizes: [256 * KiB, 1 * MiB] }, big: [9 * MiB, 2 * MiB], changedShare: 0.05 },
  valkey: { files: 1000, small: [300, 18 * KiB], medium: { count: 0, sizes: [0, 0] }, big: [], changedShare: 0 },
  big: { count: 2, size: 24 * MiB },
}

/** Bytes that depend only on (seed, label): AES-256-CTR over zeros, keyed by their SHA-256. Fast enough for a gigabyte. */
function byteStream(seed, label) {
  const key = createHash('sha256').update(`${seed}\0${label}`).digest()
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  return (length) => cipher.update(Buffer.alloc(length))
}

/** Uniform numbers in [0, 1) that depend only on (seed, label). */
function randomNumbers(seed, label) {
  const bytes = byteStream(seed, label)
  let pool = Buffer.alloc(0)
  let offset = 0
  return () => {
    if (offset + 4 > pool.length) {
      pool = bytes(4096)
      offset = 0
    }
    const value = pool.readUInt32LE(offset)
    offset += 4
    return value / 2 ** 32
  }
}

const TEXT = Buffer.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789(){};=.,:"_ ')

/** `size` bytes for file `label`: printable lines for text files (JS, CSS, SVG, JSON), raw bytes for the rest. */
function content(seed, label, size, text) {
  const bytes = byteStream(seed, label)(size)
  if (!text) return bytes
  for (let i = 0; i < size; i++) bytes[i] = i % 120 === 119 ? 10 : TEXT[bytes[i] % TEXT.length]
  return bytes
}

const logUniform = (random, [min, max]) => Math.round(min * (max / min) ** random())

/** Content-hashed kinds of file, as a bundler names them, and their share of the hashed files. */
const HASHED_KINDS = [
  { template: 'js/chunk-[hash].js', text: true, share: 0.55 },
  { template: 'css/chunk-[hash].css', text: true, share: 0.12 },
  { template: 'images/icon-[n]-[hash].svg', text: true, share: 0.18 },
  { template: 'images/photo-[n]-[hash].png', text: false, share: 0.1 },
  { template: 'js/chunk-[hash].js.LICENSE.txt', text: true, share: 0.05 },
]
const FONTS = ['RedHatDisplay', 'RedHatText', 'RedHatMono'].flatMap((family) =>
  ['Regular', 'Medium', 'Bold', 'Italic'].map((weight) => `fonts/${family}-${weight}.woff2`),
)
const LOCALES = ['en', 'de', 'es', 'fr', 'ja', 'ko', 'pt-BR', 'zh-CN', 'it', 'nl'].flatMap((locale) => [
  `locales/${locale}/messages.json`,
  `locales/${locale}/help.json`,
])

/** The kind whose share holds `pick`, a number in [0, 1). */
function hashedKind(pick) {
  let rest = pick
  for (const kind of HASHED_KINDS) {
    rest -= kind.share
    if (rest < 0) return kind
  }
  return HASHED_KINDS[0]
}

/**
 * Every file of a frontend build as `{ id, template, size, text }`: `id` is stable from build to
 * build, `[hash]` in `template` becomes the content hash. index.html and fed-mods.json are made
 * last from the entry chunk's name (see `writeBuild`).
 */
function frontendFiles(seed, spec) {
  const random = randomNumbers(seed, `files:${spec.files}`)
  const files = [
    { id: 'entry', template: 'js/entry-[hash].js', size: 40 * KiB, text: true },
    { id: 'app-info', template: 'app-info.json', size: 600, text: true },
    { id: 'favicon', template: 'favicon.ico', size: 15 * KiB, text: false },
    { id: 'robots', template: 'robots.txt', size: 300, text: true },
    ...FONTS.map((template) => ({ id: template, template, size: logUniform(random, [20 * KiB, 120 * KiB]), text: false })),
    ...LOCALES.map((template) => ({ id: template, template, size: logUniform(random, [2 * KiB, 40 * KiB]), text: true })),
    ...spec.big.map((size, n) => ({ id: `big-${n}`, template: n % 2 === 0 ? 'js/vendors-[hash].js.map' : 'wasm/engine-[hash].wasm', size, text: n % 2 === 0 })),
  ]
  for (let n = 0; n < spec.medium.count; n++)
    files.push({ id: `medium-${n}`, template: `js/vendor-${n}-[hash].js`, size: logUniform(random, spec.medium.sizes), text: true })
  // index.html and fed-mods.json are the two files still to come.
  for (let n = 0; files.length < spec.files - 2; n++) {
    const kind = hashedKind(random())
    files.push({ id: `file-${n}`, template: kind.template.replace('[n]', String(n)), size: logUniform(random, spec.small), text: kind.text })
  }
  return files
}

/** The ids that change in the next build: the entry chunk and app-info.json always (a new build), then others at random; never the big files. */
function changedIds(seed, files, share) {
  const wanted = Math.round(files.length * share) - 2 // index.html and fed-mods.json change with the entry
  const changed = new Set(['entry', 'app-info'])
  const candidates = files.filter((file) => !file.id.startsWith('big-') && !changed.has(file.id))
  const random = randomNumbers(seed, 'changed')
  while (changed.size < wanted && candidates.length > 0) changed.add(candidates.splice(Math.floor(random() * candidates.length), 1)[0].id)
  return changed
}

const hash8 = (bytes) => createHash('sha256').update(bytes).digest('hex').slice(0, 8)

/** Writes one build into `dir` (made anew); version 1 is the next build, where the files of `changed` differ. */
async function writeBuild(dir, { seed, app, files, changed, version }) {
  await rm(dir, { recursive: true, force: true })
  const names = new Set()
  let bytes = 0
  const write = async (relpath, data) => {
    if (names.has(relpath)) throw new Error(`Synthetic build: two files named ${relpath}; change --seed`)
    names.add(relpath)
    bytes += data.length
    await mkdir(dirname(join(dir, relpath)), { recursive: true })
    await writeFile(join(dir, relpath), data)
  }
  let entry = ''
  for (const file of files) {
    const next = version === 1 && changed.has(file.id)
    // A changed file rarely keeps its exact size.
    const size = next ? Math.max(1, Math.round(file.size * (0.9 + 0.2 * randomNumbers(seed, `resize:${file.id}`)()))) : file.size
    const data = content(seed, `${file.id}@${next ? 1 : 0}`, size, file.text)
    const relpath = file.template.replace('[hash]', hash8(data))
    if (file.id === 'entry') entry = relpath
    await write(relpath, data)
  }
  const modules = Array.from({ length: 40 }, (_, n) => ({
    id: `./Module${n}`,
    module: `./src/modules/Module${n}.tsx`,
    routes: [{ pathname: `/${app}/page-${n}` }],
  }))
  await write('fed-mods.json', Buffer.from(JSON.stringify({ [app]: { entry: [`/apps/${app}/${entry}`], modules } }, null, 2)))
  await write(
    'index.html',
    Buffer.from(
      `<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>${app}</title></head>\n<body><div id="root"></div>\n<script type="module" src="/apps/${app}/${entry}"></script>\n</body>\n</html>\n`,
    ),
  )
  return { files: names.size, bytes }
}

async function writeBigBuild(dir, { seed, count, size }) {
  await rm(dir, { recursive: true, force: true })
  await mkdir(join(dir, 'media'), { recursive: true })
  for (let n = 0; n < count; n++) {
    const data = content(seed, `big-build-${n}`, size, false)
    await writeFile(join(dir, 'media', `clip-${n}-${hash8(data)}.mp4`), data)
  }
  return { files: count, bytes: count * size }
}

/**
 * Makes (or finds, from an earlier run with the same seed and sizes) the bench's builds under `root`:
 * `a` and `b` (the next build of the same app, 5% of its files changed), `valkey` and `big`.
 * Each directory is written beside its final name and renamed into place, so a half-written one is never reused.
 */
export async function ensureBuilds(root, { seed, app, sizes, big }) {
  const key = hash8(Buffer.from(JSON.stringify({ GENERATOR_VERSION, seed, app, sizes })))
  const base = join(root, `data-${key}`)
  const summaryFile = join(base, 'summary.json')
  if (existsSync(summaryFile)) {
    const summary = JSON.parse(await readFile(summaryFile, 'utf8'))
    if (!big || summary.big) return summary
  }
  await mkdir(base, { recursive: true })
  const made = async (name, write) => {
    const dir = join(base, name)
    const info = await write(`${dir}.partial`)
    await rm(dir, { recursive: true, force: true })
    await rename(`${dir}.partial`, dir)
    return { dir, ...info }
  }
  const frontend = frontendFiles(seed, sizes.frontend)
  const changed = changedIds(seed, frontend, sizes.frontend.changedShare)
  const valkeyFiles = frontendFiles(seed, sizes.valkey)
  const summary = {
    seed,
    a: await made('a', (dir) => writeBuild(dir, { seed, app, files: frontend, changed, version: 0 })),
    b: { ...(await made('b', (dir) => writeBuild(dir, { seed, app, files: frontend, changed, version: 1 }))), changed: changed.size + 2 },
    valkey: await made('valkey', (dir) => writeBuild(dir, { seed, app, files: valkeyFiles, changed: new Set(), version: 0 })),
    big: big ? await made('big', (dir) => writeBigBuild(dir, { seed, ...sizes.big })) : undefined,
  }
  await writeFile(summaryFile, `${JSON.stringify(summary, null, 2)}\n`)
  return summary
}

/** The shape of the `big-tree` group: a build of many small files (100,000 make ~38 MiB), for manifests and memory. */
const BIG_TREE = { small: [128, 700], medium: { count: 0, sizes: [0, 0] }, big: [], changedShare: 0 }

/** Makes (or finds) a build of `files` small files under `root`, as {@link ensureBuilds} does its builds. */
export async function ensureBigTree(root, { seed, app, files }) {
  const spec = { ...BIG_TREE, files }
  const dir = join(root, `tree-${hash8(Buffer.from(JSON.stringify({ GENERATOR_VERSION, seed, app, spec, names: 'numbered' })))}`)
  const summaryFile = `${dir}.json`
  if (existsSync(summaryFile)) return JSON.parse(await readFile(summaryFile, 'utf8'))
  await mkdir(root, { recursive: true })
  // Past ~100,000 files two 8-hex hashes meet: the file's number keeps every name apart.
  const unique = frontendFiles(seed, spec).map((file) =>
    file.template.includes('[hash]') && !/\d/.test(file.template) ? { ...file, template: file.template.replace('[hash]', `${file.id}-[hash]`) } : file,
  )
  const info = await writeBuild(`${dir}.partial`, { seed, app, files: unique, changed: new Set(), version: 0 })
  await rm(dir, { recursive: true, force: true })
  await rename(`${dir}.partial`, dir)
  const summary = { dir, ...info }
  await writeFile(summaryFile, `${JSON.stringify(summary, null, 2)}\n`)
  return summary
}

/** Every file under `dir`, as paths relative to it with `/` separators. */
export async function listFiles(dir) {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((entry) => entry.isFile()).map((entry) => relative(dir, join(entry.parentPath, entry.name)).split('\\').join('/'))
}

/** Sets every file's mtime to now, as a fresh CI build would have it: tools that compare mtimes see a new build. */
export async function freshen(dir) {
  const now = new Date()
  for (const relpath of await listFiles(dir)) await utimes(join(dir, relpath), now, now)
}
