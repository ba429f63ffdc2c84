import { dirname, relative, resolve } from 'node:path'
import type { PluginBuild } from 'esbuild'
import { toPosix } from '../core/push/collect-files'
import { madeByHashedTemplate } from './names'
import type { PushSession } from './session'

/** esbuild's hash: 8 characters of base32. */
const ESBUILD_HASH = '[A-Z2-7]+'

/**
 * esbuild: force a metafile, whose `outputs` (relative to `absWorkingDir`) are the written files,
 * and push in `onEnd`, which esbuild awaits and whose `errors` fail the build. A file is hashed
 * when a name template holding `[hash]` made it (`entryNames`, `chunkNames`, `assetNames`, with
 * esbuild's defaults). A plugin cannot tell `context().watch()` from `rebuild()`
 * (evanw/esbuild#2823): every build of a context after its first counts as a watch rebuild.
 */
export function esbuildSetup(session: PushSession) {
  return (build: PluginBuild): void => {
    const { initialOptions } = build
    initialOptions.metafile = true
    const templates = [initialOptions.entryNames ?? '[dir]/[name]', initialOptions.chunkNames ?? '[name]-[hash]', initialOptions.assetNames ?? '[name]-[hash]']
    const hashed = (name: string) => templates.some((template) => madeByHashedTemplate(name, template, ESBUILD_HASH, '\\.[^/]+'))
    let builds = 0
    build.onStart(() => {
      try {
        session.start()
        return undefined
      } catch (error) {
        return { errors: [{ text: (error as Error).message }] }
      }
    })
    build.onEnd(async (result) => {
      const rebuild = builds++ > 0
      if (result.errors.length > 0 || !result.metafile) return undefined
      if (initialOptions.write === false) {
        session.logger.warn('`write: false`: esbuild wrote no files, nothing to push')
        return undefined
      }
      const cwd = initialOptions.absWorkingDir ?? process.cwd()
      const out = initialOptions.outdir ?? (initialOptions.outfile && dirname(initialOptions.outfile))
      if (!out) return undefined
      const outDir = resolve(cwd, out)
      session.collect(
        outDir,
        Object.keys(result.metafile.outputs).map((file) => {
          const name = toPosix(relative(outDir, resolve(cwd, file)))
          return { name, immutable: hashed(name) }
        }),
      )
      const failure = await session.finish({ watchMode: rebuild })
      return failure && { errors: [{ text: failure.message }] }
    })
  }
}
