// Loaded with `node --import` into a CLI actor on the local store: the local store's requests are
// file system calls, so this is its hold proxy. Each call on a key under HARNESS_FS_ROOT (a write
// renamed or linked into place, an open for reading, a directory listing, a removal) first asks the
// gate server at HARNESS_GATE_URL, and again once done; the server answers when the gate lets the
// call through, or with an error for an injected failure.
import fsPromises from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'
import { relative, resolve, sep } from 'node:path'

const root = process.env.HARNESS_FS_ROOT
const gateUrl = process.env.HARNESS_GATE_URL

/** The store key a path is, or undefined for anything else: temporary files and compare-and-swap guards are no requests. */
function keyOf(path) {
  const key = relative(root, resolve(String(path)))
    .split(sep)
    .join('/')
  if (key.startsWith('..') || key.startsWith('.writing') || key.endsWith('.guard.tmp')) return undefined
  return key
}

async function pass(operation, key, phase) {
  const answer = await fetch(gateUrl, { method: 'POST', body: JSON.stringify({ operation, key, phase }) })
  if (answer.status !== 200) throw Object.assign(new Error(await answer.text()), { code: 'EIO' })
}

/** `name` of fs/promises, gated as `operation` on the key its `pathAt` argument names. */
function gate(name, operation, pathAt) {
  const original = fsPromises[name]
  fsPromises[name] = async (...args) => {
    const key = keyOf(args[pathAt])
    if (key === undefined) return original(...args)
    // A listing names its directory, as a prefix does.
    const named = operation === 'list' ? `${key}/` : key
    await pass(operation, named, 'before')
    const result = await original(...args)
    await pass(operation, named, 'after')
    return result
  }
}

if (root && gateUrl) {
  gate('rename', 'put', 1)
  gate('link', 'put', 1)
  gate('open', 'read', 0)
  gate('readdir', 'list', 0)
  gate('rm', 'delete', 0)
  syncBuiltinESMExports()
}
