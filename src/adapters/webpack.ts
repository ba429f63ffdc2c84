import type { PushSession } from './session'

/** What webpack 5 and Rspack 2 compilers share, and all this adapter uses. */
interface CompilerLike {
  watchMode: boolean
  options: { mode?: string }
  hooks: {
    beforeRun: { tapPromise(name: string, fn: () => Promise<void>): void }
    watchRun: { tapPromise(name: string, fn: () => Promise<void>): void }
    afterEmit: { tapPromise(name: string, fn: (compilation: CompilationLike) => Promise<void>): void }
    done: { taps?: ReadonlyArray<{ name: string }> }
  }
}

interface CompilationLike {
  outputOptions: { path?: string }
  getAssets(): ReadonlyArray<{ name: string; info: { immutable?: boolean } }>
  getErrors(): ReadonlyArray<unknown>
  errors: unknown[]
}

/**
 * Dev servers watch through a dev middleware that taps `done` before the first compilation:
 * webpack-dev-server's and Rspack's (`webpack-dev-middleware`, `rspack-dev-middleware`), Rsbuild's
 * (`rsbuild-dev-middleware`, `rsbuild-dev-server`). What they serve is never pushed, even when
 * `devMiddleware.writeToDisk` puts it on disk.
 */
const servedByDevServer = (compiler: CompilerLike) => compiler.hooks.done.taps?.some((tap) => /dev-(middleware|server)/.test(tap.name)) ?? false

/** webpack prints an error in `compilation.errors` as its message alone, without a stack. */
const asCompilationError = (error: Error) => Object.assign(error, { hideStack: true })

/**
 * Webpack and Rspack: `afterEmit` runs once the files are on disk, knows every asset (including
 * ones webpack did not rewrite because they were unchanged) and whether webpack named it with a
 * content hash (`info.immutable`); the push happens there, unless the build had errors. A failure
 * goes to `compilation.errors`, which webpack prints like any build error and counts in the exit code.
 */
export function applyWebpackHooks(compiler: CompilerLike, session: PushSession, name: string): void {
  // Before the compilation: a wrong option rejects the run there, instead of waiting in
  // `compilation.errors` for the whole bundle to be built.
  const begin = async () => {
    if (servedByDevServer(compiler)) return session.devServer()
    session.start()
  }
  compiler.hooks.beforeRun.tapPromise(name, begin)
  compiler.hooks.watchRun.tapPromise(name, begin)
  compiler.hooks.afterEmit.tapPromise(name, async (compilation) => {
    const outDir = compilation.outputOptions.path
    if (servedByDevServer(compiler) || compilation.getErrors().length > 0 || !outDir) return
    session.collect(
      outDir,
      compilation.getAssets().map((asset) => ({ name: asset.name, immutable: asset.info.immutable === true })),
    )
    const failure = await session.finish({ watchMode: compiler.watchMode, mode: compiler.options.mode })
    if (failure) compilation.errors.push(asCompilationError(failure))
  })
}
