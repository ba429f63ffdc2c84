import { PushCacheError } from '../core/model/errors'

/** What a shell reports for a process ended by the signal: 128 + its number. */
const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const
export type StopSignal = keyof typeof EXIT_CODES

/** A command stopped by SIGTERM or SIGINT: it failed, and exits as a process killed by that signal would. */
export class StoppedBySignal extends PushCacheError {
  readonly exitCode: number
  constructor(signal: StopSignal, message: string) {
    super('UPLOAD_FAILED', message)
    this.exitCode = EXIT_CODES[signal]
  }
}

/**
 * Runs `work` with a signal that the first SIGTERM or SIGINT aborts with the error `stopped` makes
 * (a {@link StoppedBySignal} for a push, which exits as killed); a second one is left to Node (exit
 * at once). A cancelled CI job or a deleted Kubernetes Job sends SIGTERM and waits: enough for a
 * push to stop starting uploads and clean up, and for a pop to drop its unfinished directory.
 */
export async function untilSignalled<T>(stopped: (signal: StopSignal) => Error, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  const listeners = Object.fromEntries((Object.keys(EXIT_CODES) as StopSignal[]).map((name) => [name, () => controller.abort(stopped(name))]))
  for (const [name, listener] of Object.entries(listeners)) process.once(name, listener)
  try {
    return await work(controller.signal)
  } finally {
    for (const [name, listener] of Object.entries(listeners)) process.off(name, listener)
  }
}
