import { redact } from '../model/errors'

export interface Logger {
  info(message: string): void
  warn(message: string): void
  error(message: string): void
  debug(message: string): void
}

const toStderr = (line: string) => void process.stderr.write(`${line}\n`)

/** `[push-cache:vite] message` on stderr; `debug` only when asked. Every line is redacted. */
export function createLogger(tag: string, debug = false, write: (line: string) => void = toStderr): Logger {
  const prefix = `[push-cache${tag ? `:${tag}` : ''}]`
  return leveled(debug, (level, message) => write(`${prefix}${level === 'info' ? '' : ` ${level === 'warn' ? 'warning' : level}:`} ${redact(message)}`))
}

/** One JSON object a line (`time`, `level`, `message`), for log pipelines; redacted like the text lines. */
export function createJsonLogger(debug = false, write: (line: string) => void = toStderr): Logger {
  return leveled(debug, (level, message) => write(JSON.stringify({ time: new Date().toISOString(), level, message: redact(message) })))
}

type Level = keyof Logger

function leveled(debug: boolean, log: (level: Level, message: string) => void): Logger {
  const at = (level: Level) => (message: string) => log(level, message)
  return { info: at('info'), warn: at('warn'), error: at('error'), debug: debug ? at('debug') : () => {} }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} }
