import { createStore } from '../stores'
import { collectFiles } from './files'
import type { Logger } from './logger'
import type { ResolvedOptions } from './options'
import { type PopulateReport, type ProgressEvent, populate } from './populate'

/**
 * What a bundler adapter calls once per build: collect the output, open the store, push, close.
 * `emitted` is the bundler's own list of written files (relative to `outDir`), used with `scan: 'emitted'`.
 */
export async function pushOutput(input: {
  outDir: string
  emitted?: readonly string[]
  options: ResolvedOptions
  logger: Logger
  onProgress?: (event: ProgressEvent) => void
}): Promise<PopulateReport> {
  const { outDir, emitted, options, logger, onProgress } = input
  const files = await collectFiles(outDir, options.scan === 'emitted' ? emitted : undefined)
  const store = await createStore(options.store, options)
  try {
    return await populate({ store, options, files, logger, onProgress })
  } finally {
    await store.close()
  }
}
