import { formatBytes, type ProgressEvent } from '../core/model/progress'
import type { Logger } from '../core/util/logger'

export interface Progress {
  onProgress(event: ProgressEvent): void
  stop(): void
  /** The logger to use while the bar is drawn: a line ends the bar first, so the bar never draws over it. */
  logger: Logger
}

/** The widest text beside the bar: `100% 20000/20000 files 999.9 MiB/999.9 MiB 999.9 MiB/s ETA 1h23m`. */
const TEXT_WIDTH = 72

/** Plain lines, one per tenth of the bytes, so that CI logs stay short for thousands of files. */
const LOG_STEPS = 10

const rate = (bytes: number, startedAt: number) => `${formatBytes(Math.round(bytes / Math.max((Date.now() - startedAt) / 1000, 0.001)))}/s`

/**
 * A bar (files, bytes, rate, ETA) on stderr when a person watches a terminal; plain log lines in
 * CI (no TTY, or `CI=true`), where redrawn bars turn into noise.
 */
export async function createProgress(logger: Logger, interactive: boolean, debug: boolean): Promise<Progress> {
  const startedAt = Date.now()
  if (!interactive) {
    let logged = 0
    return {
      onProgress({ done, total }) {
        const step = total.bytes === 0 ? LOG_STEPS : Math.floor((done.bytes / total.bytes) * LOG_STEPS)
        if (step <= logged && done.files < total.files) return
        logged = step
        logger.info(`${done.files}/${total.files} files, ${formatBytes(done.bytes)}/${formatBytes(total.bytes)}, ${rate(done.bytes, startedAt)}`)
      },
      stop() {},
      logger,
    }
  }
  // The bar counts bytes, so its percentage and ETA follow the real work; files ride along as a
  // payload. The bar shrinks so that the line fits the terminal: cli-progress clips what does not.
  // Imported only for a terminal: CI never draws it, and need not load it.
  const { default: cliProgress } = await import('cli-progress')
  const bar = new cliProgress.SingleBar(
    {
      format: '{bar} {percentage}% {files} files {bytes} {rate} ETA {eta_formatted}',
      barsize: Math.min(40, Math.max(8, (process.stderr.columns ?? 80) - TEXT_WIDTH)),
      hideCursor: true,
      clearOnComplete: false,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  )
  let started = false
  const stop = () => {
    if (started) bar.stop()
    started = false
  }
  const ending = (log: (message: string) => void) => (message: string) => {
    stop()
    log(message)
  }
  return {
    onProgress({ done, total }) {
      const payload = {
        files: `${done.files}/${total.files}`,
        bytes: `${formatBytes(done.bytes)}/${formatBytes(total.bytes)}`,
        rate: rate(done.bytes, startedAt),
      }
      if (!started) bar.start(Math.max(total.bytes, 1), done.bytes, payload)
      started = true
      bar.update(done.bytes, payload)
    },
    stop,
    logger: { info: ending(logger.info), warn: ending(logger.warn), error: ending(logger.error), debug: debug ? ending(logger.debug) : logger.debug },
  }
}
