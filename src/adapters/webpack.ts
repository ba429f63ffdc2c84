import type { PushSession } from './session'

/** What webpack 5 and Rspack 2 compilers share, and all this adapter uses. */
interface CompilerLike {
  watchMode: boolean
  hooks: {
    compile: { tap(name: string, fn: () => void): void }
    afterEmit: { tap(name: string, fn: (compilation: CompilationLike) => void): void }
    done: { tapPromise(name: string, fn: (stats: { hasErrors(): boolean }) => Promise<void>): void }
  }
}

interface CompilationLike {
  outputOptions: { path?: string }
  getAssets(): ReadonlyArray<{ name: string }>
}

/**
 * Webpack and Rspack: `afterEmit` runs once the files are on disk and knows every asset (including
 * ones webpack did not rewrite because they were unchanged); `done` is where we push, unless the
 * build had errors. A rejected `done` reaches the `run()` callback, so the CLI exits non-zero.
 */
export function applyWebpackHooks(compiler: CompilerLike, session: PushSession, name: string): void {
  compiler.hooks.compile.tap(name, () => session.start())
  compiler.hooks.afterEmit.tap(name, (compilation) => {
    const outDir = compilation.outputOptions.path
    if (outDir)
      session.collect(
        outDir,
        compilation.getAssets().map((asset) => asset.name),
      )
  })
  compiler.hooks.done.tapPromise(name, async (stats) => {
    if (stats.hasErrors()) return
    await session.finish(compiler.watchMode)
  })
}
