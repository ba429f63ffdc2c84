import { cac } from 'cac'
import { PushCacheError } from '../core/model/errors'
import { VERSION } from '../core/model/version'
import { createLogger } from '../core/util/logger'
import { resolveOptions } from '../options'
import { type Context, lsCommand, popCommand, populateCommand, pruneCommand, watchCommand } from './commands'
import { codeOf, EXIT_OK, EXIT_USAGE, exitCodeOf, messageOf, stackOf } from './errors'
import { addFlags, type Flags, restoreFlagText, toOptions, toWatchSettings } from './flags'

const writeLine = (stream: NodeJS.WriteStream) => (line: string) => void stream.write(`${line}\n`)
const stdout = writeLine(process.stdout)
const stderr = writeLine(process.stderr)

/** `CI=true` (or any value but `0`/`false`) means nobody watches: no bar, plain lines. */
const inCI = (env: NodeJS.ProcessEnv) => env.CI !== undefined && !['', '0', 'false'].includes(env.CI)

/**
 * Runs `push-cache` with `argv` (as in `process.argv`) and resolves to the exit code: 0 success,
 * 1 the operation failed, 2 bad usage or configuration. Reports go to stdout, everything else to stderr.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const cli = cac('push-cache')
  const logger = createLogger('', env.PUSH_CACHE_DEBUG === '1')

  const execute = (work: (context: Context) => Promise<object>) => async (flags: Flags) => {
    // Flags win over env (PUSH_CACHE_*, AWS_*), env over defaults: resolveOptions applies the last two.
    const options = resolveOptions(toOptions(flags), env)
    const context: Context = {
      options,
      logger,
      interactive: Boolean(process.stderr.isTTY) && !inCI(env),
      print: flags.json ? () => {} : stdout,
      emit: flags.json ? (event) => stdout(JSON.stringify({ time: new Date().toISOString(), ...event })) : () => {},
    }
    const report = await work(context)
    if (flags.json) stdout(JSON.stringify({ ok: true, command: cli.matchedCommandName, ...report, errors: [] }))
  }

  addFlags(cli.command('populate <dir>', 'Push a built directory to the store: assets, then entrypoints, then the manifest'), [
    'store',
    'push',
    'keep',
    'announce',
    'entrypoint',
    'concurrency',
    'dryRun',
  ])
    .example('  $ push-cache populate dist --app my-app --store s3://frontend-assets --image "$IMAGE" --prune-older-than 48h')
    .action((dir: string, flags: Flags) => execute((context) => populateCommand(String(dir), context))(flags))
  addFlags(cli.command('pop <dest>', "Download the app's current files into <dest> for serving (only what differs, switched in atomically)"), [
    'store',
    'entrypoint',
    'concurrency',
  ])
    .example('  $ push-cache pop /usr/share/nginx/html/apps/my-app --app my-app --store s3://frontend-assets')
    .action((dest: string, flags: Flags) => execute((context) => popCommand(String(dest), context))(flags))
  addFlags(cli.command('watch <dest>', 'Keep <dest> equal to what pop would make of the store: apply each new build as it lands'), [
    'store',
    'entrypoint',
    'concurrency',
    'watch',
  ])
    .example('  $ push-cache watch /srv/www/my-app --app my-app --store valkey://cache:6379 --channel push-cache:builds')
    .action((dest: string, flags: Flags) => execute((context) => watchCommand(String(dest), context, toWatchSettings(flags)))(flags))
  addFlags(cli.command('prune', 'Remove builds older than --older-than, except the newest --keep'), ['store', 'olderThan', 'keep', 'entrypoint', 'dryRun'])
    .example('  $ push-cache prune --app my-app --store s3://frontend-assets --older-than 7d --keep 3 --dry-run')
    .action(execute(pruneCommand))
  addFlags(cli.command('ls', 'List the builds of an app, newest first'), ['store'])
    .example('  $ push-cache ls --app my-app --store s3://frontend-assets --json')
    .action(execute(lsCommand))
  cli.help()
  cli.version(VERSION)

  let json = false
  try {
    const { args, options } = cli.parse([...argv], { run: false })
    restoreFlagText(options, [...cli.globalCommand.options, ...(cli.matchedCommand?.options ?? [])], argv.slice(2))
    json = Boolean(options.json)
    if (options.help || options.version) return EXIT_OK // cac printed them
    if (!cli.matchedCommand) {
      if (args.length === 0) {
        cli.outputHelp()
        return EXIT_USAGE
      }
      throw new PushCacheError(
        'INVALID_OPTION',
        `Unknown command \`${args[0]}\`. Use populate, pop, watch, prune or ls; run \`push-cache --help\` for the usage.`,
      )
    }
    await cli.runMatchedCommand()
    return EXIT_OK
  } catch (error) {
    const message = messageOf(error, cli.matchedCommandName)
    logger.error(message)
    if (env.PUSH_CACHE_DEBUG === '1') stderr(stackOf(error))
    if (json) stdout(JSON.stringify({ ok: false, command: cli.matchedCommandName, errors: [{ code: codeOf(error), message }] }))
    return exitCodeOf(error)
  }
}
