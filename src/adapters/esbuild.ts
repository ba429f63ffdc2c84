import { dirname, relative, resolve } from 'node:path'
import type { PluginBuild } from 'esbuild'
import type { PushSession } from './session'

/**
 * esbuild: force a metafile, whose `outputs` (relative to `absWorkingDir`) are the written files,
 * and push in `onEnd`, which esbuild awaits and whose error fails the build. A plugin cannot tell
 * `context().watch()` from `rebuild()` (evanw/esbuild#2823): every build of a context after its
 * first counts as a watch rebuild.
 */
export function esbuildSetup(session: PushSession) {
  return (build: PluginBuild): void => {
    const { initialOptions } = build
    initialOptions.metafile = true
    let builds = 0
    build.onStart(() => session.start())
    build.onEnd(async (result) => {
      const rebuild = builds++ > 0
      if (result.errors.length > 0 || !result.metafile) return
      if (initialOptions.write === false) {
        session.logger.warn('`write: false`: esbuild wrote no files, nothing to push')
        return
      }
      const cwd = initialOptions.absWorkingDir ?? process.cwd()
      const out = initialOptions.outdir ?? (initialOptions.outfile && dirname(initialOptions.outfile))
      if (!out) return
      const outDir = resolve(cwd, out)
      session.collect(
        outDir,
        Object.keys(result.metafile.outputs).map((file) => relative(outDir, resolve(cwd, file))),
      )
      await session.finish(rebuild)
    })
  }
}
