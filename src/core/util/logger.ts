import { redact } from '../model/errors'

export interface Logger {
  info(message: string): void
  warn(message: string): void
  error(message: string): void
  debug(message: string): void
}

/** `[push-cache:vite] message` on stderr; `debug` only when asked. Every line is redacted. */
export function createLogger(tag: string, debug = false, write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Logger {
  const prefix = `[push-cache${tag ? `:${tag}` : ''}]`
  const log = (level: string) => (message: string) => write(`${prefix}${level} ${redact(message)}`)
  return {
    info: log(''),
    warn: log(' warning:'),
    error: log(' error:'),
    debug: debug ? log(' debug:') : () => {},
  }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} }
