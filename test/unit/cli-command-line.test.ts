import { describe, expect, it } from 'vitest'
import { type CommandSpec, helpText, parseCommandLine } from '../../src/cli/command-line'
import { FLAG_GROUPS, toOptions } from '../../src/cli/flags'

const COMMANDS: CommandSpec[] = [
  { name: 'populate', argument: 'dir', summary: 'Push', groups: ['store', 'push', 'keep', 'concurrency', 'report'], example: 'push-cache populate dist' },
  { name: 'watch', argument: 'dest', summary: 'Watch', groups: ['store', 'watch', 'events'], example: 'push-cache watch www' },
  { name: 'ls', summary: 'List', groups: ['store', 'report'], example: 'push-cache ls' },
]
const parse = (...args: string[]) => parseCommandLine(['node', 'push-cache', ...args], COMMANDS)

describe('the command line', () => {
  it('keeps every value as the text typed', () => {
    expect(parse('populate', 'dist', '--app', '007', '--image', '1.10', '--timestamp=0100', '--include', 'a/**', '--include', '*.js')).toEqual({
      kind: 'run',
      command: COMMANDS[0],
      argument: 'dist',
      flags: { app: '007', image: '1.10', timestamp: '0100', include: ['a/**', '*.js'] },
    })
  })

  it('hands a negative number to its flag, whose own check then names it', () => {
    expect(parse('populate', 'dist', '--keep', '-1', '--concurrency', '-16')).toMatchObject({ flags: { keep: '-1', concurrency: '-16' } })
  })

  it.each([
    [['populate', 'dist', '--bucket', 'x'], /^Unknown option `--bucket`\. Run `push-cache populate --help`/],
    [['populate', 'dist', '--app'], /^Option `--app <name>` value is missing/],
    [['populate', 'dist', '--app', '--json'], /^Option `--app <name>` value is missing/],
    [['populate', 'dist', '--json=yes'], /^Option `--json` takes no value/],
    [['populate'], /^Missing <dir>/],
    [['ls', 'extra'], /^Unexpected argument `extra`/],
    [['push', 'dist'], /^Unknown command `push`\. Use populate, watch, ls/],
    [['ls', '--store', 'redis://user:s3cret@host', 'redis://user:s3cret@host'], /^Unexpected argument `redis:\/\/user:\*\*\*@host`/],
  ])('refuses %j', (args, message) => {
    expect(() => parse(...args)).toThrow(message)
  })

  it('answers --help and --version before anything else, and the bare command with its usage', () => {
    expect(parse('watch', '--help')).toEqual({ kind: 'help', command: COMMANDS[1] })
    expect(parse('-h')).toEqual({ kind: 'help', command: undefined })
    expect(parse('ls', '--bogus', '-v')).toEqual({ kind: 'version' })
    expect(parse()).toEqual({ kind: 'usage' })
  })

  it("generates each command's help from the table the parser reads", () => {
    const help = helpText(COMMANDS, '1.2.3', COMMANDS[1])
    expect(help).toContain('$ push-cache watch <dest> [options]')
    for (const [usage, description] of [...FLAG_GROUPS.store, ...FLAG_GROUPS.watch]) {
      expect(help).toContain(`${usage} `)
      expect(help).toContain(description)
    }
    expect(help).toMatch(/--json +Print one JSON line on stdout per event/)
    expect(help).not.toContain('--keep')
  })

  it('turns --s3-no-conditional-writes into s3.conditionalWrites: false, for a server that ignores If-None-Match', () => {
    const { flags } = parse('populate', 'dist', '--s3-no-conditional-writes') as { flags: Record<string, true> }
    expect(toOptions(flags).s3).toEqual({ conditionalWrites: false })
    expect(toOptions({}).s3).not.toHaveProperty('conditionalWrites')
  })
})
