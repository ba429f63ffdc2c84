import { describeError, PushCacheError, redact, USAGE_ERROR_CODES } from '../core/model/errors'
import { CommandLineError } from './command-line'
import { StoppedBySignal } from './signals'
import { StoreConfigurationError } from './store'

export const EXIT_OK = 0
const EXIT_FAILED = 1
export const EXIT_USAGE = 2

/** 2 for anything the user must fix in the invocation or configuration, 1 when the work itself failed. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof CommandLineError || error instanceof StoreConfigurationError) return EXIT_USAGE
  if (error instanceof StoppedBySignal) return error.exitCode
  return error instanceof PushCacheError && USAGE_ERROR_CODES.has(error.code) ? EXIT_USAGE : EXIT_FAILED
}

/** The one-line message a user sees for a failure: what, where, and how to fix it. */
export function messageOf(error: unknown): string {
  if (error instanceof PushCacheError || error instanceof CommandLineError) return error.message
  return `${describeError(error)}. Run again with PUSH_CACHE_DEBUG=1 for the details.`
}

/** `code` for the JSON report: the stable `PushCacheError` code, or what kind of failure it was. */
export function codeOf(error: unknown): string {
  if (error instanceof PushCacheError) return error.code
  return error instanceof CommandLineError ? 'USAGE' : 'FAILED'
}

/** The stack and every `cause` below it, redacted: only for PUSH_CACHE_DEBUG=1. */
export function stackOf(error: unknown): string {
  const lines: string[] = []
  for (let current = error; current !== undefined; current = (current as { cause?: unknown }).cause) {
    lines.push(current instanceof Error ? (current.stack ?? current.message) : String(current))
    if (!(current instanceof Error)) break
  }
  return redact(lines.join('\nCaused by: '))
}
