import { dirname } from 'node:path'
import { madeByHashedTemplate } from './names'
import type { BuildContext, EmittedFile, PushSession } from './session'

type FileNames = string | ((info: never) => string)

/** What Rollup, Rolldown and Vite pass to `writeBundle`, as far as this adapter reads it. */
interface OutputOptionsLike {
  dir?: string
  file?: string
  entryFileNames?: FileNames
  chunkFileNames?: FileNames
  assetFileNames?: FileNames
}

type OutputItem =
  | { type: 'chunk'; fileName: string; isEntry: boolean }
  /** `names` since Rollup 4.30 (`name` before): empty for an asset emitted with a fixed `fileName`. */
  | { type: 'asset'; fileName: string; names?: readonly string[]; name?: string }

interface PluginContextLike {
  meta: { watchMode: boolean }
  error(error: Error): never
}

/** Rollup's hash alphabet: base64url (the default), base36 or hex. */
const ROLLUP_HASH = '[A-Za-z0-9_$-]+'

/**
 * Whether the bundler named this file with a hash: the pattern that named it (`entryFileNames` for
 * entries, `chunkFileNames`, `assetFileNames`; a function is asked with the file itself) holds
 * `[hash]`. An asset emitted with a fixed `fileName` (`fed-mods.json`, a copied font) was named by
 * no pattern.
 */
function namedByHash(item: OutputItem, options: OutputOptionsLike): boolean {
  const named = item.type === 'chunk' || (item.names ? item.names.length > 0 : item.name !== undefined)
  const pattern = item.type === 'chunk' ? (item.isEntry ? options.entryFileNames : options.chunkFileNames) : options.assetFileNames
  if (!named || pattern === undefined) return false
  try {
    const template = typeof pattern === 'function' ? pattern(item as never) : pattern
    return madeByHashedTemplate(item.fileName, template, ROLLUP_HASH)
  } catch {
    return false // a pattern function that cannot name this file: no claim of a hash
  }
}

/**
 * Rollup, Rolldown and Vite: `writeBundle` fires once per output with the real file list, and
 * `closeBundle` once per build (also after a failed one, with the error since Rollup 4.35) is where
 * we push. Both are `sequential` so the bundler awaits the push before it reports the build done.
 */
export function rollupHooks(session: PushSession, buildContext: (meta: { watchMode: boolean }) => BuildContext = (meta) => ({ watchMode: meta.watchMode })) {
  return {
    buildStart(this: PluginContextLike) {
      try {
        session.start()
      } catch (error) {
        this.error(error as Error)
      }
    },
    writeBundle: {
      sequential: true,
      handler(outputOptions: OutputOptionsLike, bundle: Record<string, OutputItem>) {
        const outDir = outputOptions.dir ?? (outputOptions.file ? dirname(outputOptions.file) : undefined)
        if (!outDir) return
        const files: EmittedFile[] = Object.values(bundle).map((item) => ({ name: item.fileName, immutable: namedByHash(item, outputOptions) }))
        session.collect(outDir, files)
      },
    },
    closeBundle: {
      sequential: true,
      async handler(this: PluginContextLike, error?: Error) {
        // A failed build wrote nothing, so nothing was collected; the error check also covers a build
        // that failed after some outputs were written.
        if (error) return
        const failure = await session.finish(buildContext(this.meta))
        if (failure) this.error(failure)
      },
    },
  }
}
