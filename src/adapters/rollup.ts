import { dirname } from 'node:path'
import type { PushSession } from './session'

/**
 * Rollup, Rolldown and Vite: `writeBundle` fires once per output with the real file list, and
 * `closeBundle` once per build (also after a failed one, with the error since Rollup 4.35) is where
 * we push. Both are `sequential` so the bundler awaits the push before it reports the build done.
 */
export function rollupHooks(session: PushSession, isWatch: (meta: { watchMode: boolean }) => boolean = (meta) => meta.watchMode) {
  return {
    buildStart() {
      session.start()
    },
    writeBundle: {
      sequential: true,
      handler(outputOptions: { dir?: string; file?: string }, bundle: Record<string, unknown>) {
        const outDir = outputOptions.dir ?? (outputOptions.file ? dirname(outputOptions.file) : undefined)
        if (outDir) session.collect(outDir, Object.keys(bundle))
      },
    },
    closeBundle: {
      sequential: true,
      async handler(this: { meta: { watchMode: boolean } }, error?: Error) {
        // A failed build wrote nothing, so nothing was collected; the error check also covers a build
        // that failed after some outputs were written.
        if (error) return
        await session.finish(isWatch(this.meta))
      },
    },
  }
}
