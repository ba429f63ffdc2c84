import type { ProgressEvent } from '../core/model/progress'
import type { BuildFile } from '../core/push/plan'
import { type PopulateReport, populate } from '../core/push/populate'
import type { Logger } from '../core/util/logger'
import type { ResolvedOptions } from '../options'
import { createStore } from '../stores'

/** What a bundler adapter calls once per build: open the store, push the build's files, close. */
export async function pushFiles(input: {
  files: readonly BuildFile[]
  options: ResolvedOptions
  logger: Logger
  onProgress?: (event: ProgressEvent) => void
}): Promise<PopulateReport> {
  const { files, options, logger, onProgress } = input
  const store = await createStore(options.store, options)
  try {
    return await populate({ store, options, files, logger, onProgress })
  } finally {
    await store.close()
  }
}
