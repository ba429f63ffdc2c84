import { type ParseArgsConfig, parseArgs } from 'node:util'
import { redact } from '../core/model/errors'
import { FLAG_GROUPS, type FlagGroup, type FlagSpec, type Flags } from './flags'

/** One command of `push-cache`: what `--help` shows and which flags it takes. */
export interface CommandSpec {
  name: string
  /** Its one positional argument (`dir`, `dest`); prune and ls take none. */
  argument?: string
  summary: string
  groups: readonly FlagGroup[]
  example: string
}

/** A mistake in the command line itself (unknown command or flag, a missing value or argument): exit 2. */
export class CommandLineError extends Error {
  override name = 'CommandLineError'
}

export type CommandLine<C extends CommandSpec> =
  | { kind: 'help'; command?: C }
  | { kind: 'version' }
  /** No command at all: the help, and exit 2. */
  | { kind: 'usage' }
  | { kind: 'run'; command: C; argument?: string; flags: Flags }

const HELP: FlagSpec = ['-h, --help', 'Display this message']
const VERSION: FlagSpec = ['-v, --version', 'Display version number']

interface Flag {
  name: string
  usage: string
  description: string
  takesValue: boolean
  repeatable: boolean
}

function flagOf([usage, description, repeatable]: FlagSpec): Flag {
  const [, name = '', value] = /--([\w-]+)( <.+>)?$/.exec(usage) ?? []
  return { name, usage, description, takesValue: value !== undefined, repeatable: repeatable !== undefined }
}

const flagsOf = (groups: readonly FlagGroup[]): Flag[] => groups.flatMap((group) => (FLAG_GROUPS[group] as FlagSpec[]).map(flagOf))
const AUXILIARY = [HELP, VERSION].map(flagOf)

/** parseArgs in its lenient mode: it hands over every token, and the checks below word each mistake the way a user reads it. */
function tokensOf(args: readonly string[], flags: readonly Flag[]) {
  const options: ParseArgsConfig['options'] = {}
  for (const flag of flags) options[flag.name] = { type: flag.takesValue ? 'string' : 'boolean', multiple: flag.repeatable }
  options.help = { type: 'boolean', short: 'h' }
  options.version = { type: 'boolean', short: 'v' }
  return parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true }).tokens
}

/**
 * Reads `argv` (as in `process.argv`) against `commands`. Values stay the text typed (`--app 007`
 * is "007"), and a value may start with a dash when it is a number (`--keep -1`), so that the
 * flag's own check names it.
 */
export function parseCommandLine<C extends CommandSpec>(argv: readonly string[], commands: readonly C[]): CommandLine<C> {
  const args = argv.slice(2)
  const everyFlag = flagsOf(Object.keys(FLAG_GROUPS) as FlagGroup[])
  const first = tokensOf(args, everyFlag)
  const wants = (name: string) => first.some((token) => token.kind === 'option' && token.name === name)
  const named = first.find((token) => token.kind === 'positional')
  const command = named && commands.find((spec) => spec.name === named.value)
  if (wants('version')) return { kind: 'version' }
  if (wants('help') && (!named || command)) return { kind: 'help', command }
  if (!named) return { kind: 'usage' }
  if (!command)
    throw new CommandLineError(
      `Unknown command \`${named.value}\`. Use ${commands.map((spec) => spec.name).join(', ')}; run \`push-cache --help\` for the usage.`,
    )

  const known = new Map(flagsOf(command.groups).map((flag) => [flag.name, flag]))
  const usageHint = `Run \`push-cache ${command.name} --help\` for the usage.`
  const flags: Flags = {}
  const positionals: string[] = []
  for (const token of tokensOf(args, [...known.values()])) {
    if (token.kind === 'positional') positionals.push(token.value)
    if (token.kind !== 'option') continue
    const flag = known.get(token.name)
    // What was not expected may be a store URL with its password.
    if (!flag) throw new CommandLineError(redact(`Unknown option \`${token.rawName}\`. ${usageHint}`))
    if (!flag.takesValue) {
      if (token.inlineValue) throw new CommandLineError(`Option \`--${flag.name}\` takes no value. ${usageHint}`)
      flags[flag.name] = true
      continue
    }
    // A flag right after it, not a value: `--app --json`. A negative number is a value, for its flag's check to refuse.
    if (token.value === undefined || (!token.inlineValue && /^-(?!\d)/.test(token.value)))
      throw new CommandLineError(`Option \`${flag.usage}\` value is missing. ${usageHint}`)
    flags[flag.name] = flag.repeatable ? [...((flags[flag.name] as string[] | undefined) ?? []), token.value] : token.value
  }
  const [, argument, ...extra] = positionals
  if (command.argument && argument === undefined)
    throw new CommandLineError(`Missing <${command.argument}>: \`push-cache ${command.name} <${command.argument}>\`. ${usageHint}`)
  const unexpected = command.argument ? extra : [argument, ...extra].filter((value) => value !== undefined)
  if (unexpected.length > 0) throw new CommandLineError(redact(`Unexpected argument \`${unexpected[0]}\`. ${usageHint}`))
  return { kind: 'run', command, argument, flags }
}

const usageOf = (command: CommandSpec) => `push-cache ${command.name}${command.argument ? ` <${command.argument}>` : ''}`

/** Two columns, the second aligned. */
function table(rows: readonly [string, string][]): string[] {
  const width = Math.max(...rows.map(([left]) => left.length))
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`)
}

/** The help of one command, or of `push-cache` itself: generated from the same table the parser reads. */
export function helpText(commands: readonly CommandSpec[], version: string, command?: CommandSpec): string {
  const lines = [`push-cache/${version}`, '', 'Usage:']
  if (command) {
    lines.push(`  $ ${usageOf(command)} [options]`, '', command.summary, '', 'Options:')
    lines.push(...table([...flagsOf(command.groups), flagOf(HELP)].map((flag) => [flag.usage, flag.description])))
    lines.push('', 'Examples:', `  $ ${command.example}`)
  } else {
    lines.push('  $ push-cache <command> [options]', '', 'Commands:')
    lines.push(...table(commands.map((spec) => [usageOf(spec).slice('push-cache '.length), spec.summary])))
    lines.push('', 'For more info, run any command with the `--help` flag:', ...commands.map((spec) => `  $ push-cache ${spec.name} --help`))
    lines.push('', 'Options:', ...table(AUXILIARY.map((flag) => [flag.usage, flag.description])))
  }
  return `${lines.join('\n')}\n`
}
