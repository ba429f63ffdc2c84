import { invalidOption } from '../core/model/errors'
import { VERSION } from '../core/model/version'
import { createJsonLogger, createLogger, type Logger } from '../core/util/logger'
import { resolveOptions } from '../options'
import { checkStore } from '../stores'
import { type CommandSpec, helpText, parseCommandLine } from './command-line'
import { type Context, lsCommand, popCommand, populateCommand, pruneCommand, watchCommand } from './commands'
import { codeOf, EXIT_OK, EXIT_USAGE, exitCodeOf, messageOf, stackOf } from './errors'
import { type Flags, toOptions, toWatchSettings } from './flags'

const writeLine = (stream: NodeJS.WriteStream) => (line: string) => void stream.write(`${line}\n`)
const stdout = writeLine(process.stdout)
const stderr = writeLine(process.stderr)

/** `CI=true` (or any value but `0`/`false`) means nobody watches: no bar, plain lines. */
const inCI = (env: NodeJS.ProcessEnv) => env.CI !== undefined && !['', '0', 'false'].includes(env.CI)

interface Command extends CommandSpec {
  run(context: Context, argument: string, flags: Flags): Promise<object>
}

const COMMANDS: Command[] = [
  {
    name: 'populate',
    argument: 'dir',
    summary: 'Push a built directory to the store: assets, then entrypoints, then the manifest',
    groups: ['store', 'push', 'keep', 'announce', 'entrypoint', 'concurrency', 'dryRun', 'report', 'log'],
    example: 'push-cache populate dist --app my-app --store s3://frontend-assets --image "$IMAGE" --prune-older-than 48h',
    run: (context, dir) => populateCommand(dir, context),
  },
  {
    name: 'pop',
    argument: 'dest',
    summary: "Download the app's current files into <dest> for serving (only what differs, switched in atomically)",
    groups: ['store', 'entrypoint', 'concurrency', 'report', 'log'],
    example: 'push-cache pop /usr/share/nginx/html/apps/my-app --app my-app --store s3://frontend-assets',
    run: (context, dest) => popCommand(dest, context),
  },
  {
    name: 'watch',
    argument: 'dest',
    summary: 'Keep <dest> equal to what pop would make of the store: apply each new build as it lands',
    groups: ['store', 'entrypoint', 'concurrency', 'watch', 'events', 'log'],
    example: 'push-cache watch /srv/www/my-app --app my-app --store valkey://cache:6379 --channel push-cache:builds',
    run: (context, dest, flags) => watchCommand(dest, context, toWatchSettings(flags)),
  },
  {
    name: 'prune',
    summary: 'Remove builds older than --older-than (default 48h), except the newest --keep (default 3)',
    groups: ['store', 'olderThan', 'keep', 'entrypoint', 'dryRun', 'report', 'log'],
    example: 'push-cache prune --app my-app --store s3://frontend-assets --older-than 7d --keep 3 --dry-run',
    run: (context) => pruneCommand(context),
  },
  {
    name: 'ls',
    summary: 'List the builds of an app, newest first',
    groups: ['store', 'report', 'log'],
    example: 'push-cache ls --app my-app --store s3://frontend-assets --json',
    run: (context) => lsCommand(context),
  },
]

/**
 * Runs `push-cache` with `argv` (as in `process.argv`) and resolves to the exit code: 0 success,
 * 1 the operation failed, 2 bad usage or configuration. Reports go to stdout, everything else to stderr.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const debug = env.PUSH_CACHE_DEBUG === '1'
  let logger = createLogger('', debug)
  let json = false
  let command: string | undefined
  try {
    const line = parseCommandLine(argv, COMMANDS)
    if (line.kind === 'version') {
      stdout(`push-cache/${VERSION} ${process.platform}-${process.arch} node-${process.version}`)
      return EXIT_OK
    }
    if (line.kind !== 'run') {
      process.stdout.write(helpText(COMMANDS, VERSION, line.kind === 'help' ? line.command : undefined))
      return line.kind === 'help' ? EXIT_OK : EXIT_USAGE
    }
    const { flags } = line
    command = line.command.name
    json = flags.json === true
    logger = loggerFor(flags['log-format'] ?? env.PUSH_CACHE_LOG_FORMAT, debug) ?? logger
    // Flags win over env (PUSH_CACHE_*, AWS_*), env over defaults: resolveOptions applies the last two.
    const options = resolveOptions(toOptions(flags, command), env)
    checkStore(options, env)
    const context: Context = {
      options,
      logger,
      interactive: Boolean(process.stderr.isTTY) && !inCI(env),
      print: json ? () => {} : stdout,
      emit: json ? (event) => stdout(JSON.stringify({ time: new Date().toISOString(), ...event })) : () => {},
    }
    const report = await line.command.run(context, line.argument ?? '', flags)
    if (json) stdout(JSON.stringify({ ok: true, command, ...report, errors: [] }))
    return EXIT_OK
  } catch (error) {
    const message = messageOf(error)
    logger.error(message)
    if (env.PUSH_CACHE_DEBUG === '1') stderr(stackOf(error))
    if (json) stdout(JSON.stringify({ ok: false, command, errors: [{ code: codeOf(error), message }] }))
    return exitCodeOf(error)
  }
}

/** The logger `--log-format` asks for; undefined for the default text lines. */
function loggerFor(format: Flags[string], debug: boolean): Logger | undefined {
  if (format === undefined || format === 'text') return undefined
  if (format === 'json') return createJsonLogger(debug)
  throw invalidOption('--log-format', `is ${JSON.stringify(format)}`, 'Use text or json.')
}
