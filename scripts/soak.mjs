// `npm run soak -- [--minutes N] [--seed S]`: random schedules of push, prune, pop and watch against
// real moto, Redis and local stores (started here on free loopback ports), with random holds,
// failures and kill -9, checking I1–I4 after every step. Prints the schedules run and every
// violation with the seed and schedule that replays it; exits 1 on any violation.
import { spawn } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '3' }, seed: { type: 'string' } } })
const minutes = Number(values.minutes)
const seed = values.seed ?? String(randomInt(2 ** 31))
if (!(minutes > 0) || !/^\d+$/.test(seed)) {
  console.error('usage: npm run soak -- [--minutes N] [--seed S] (N > 0, S an integer)')
  process.exit(2)
}
const report = join(await mkdtemp(join(tmpdir(), 'push-cache-soak-')), 'report.json')
console.log(`soak: ${minutes} min, seed ${seed}`)
const vitest = spawn('npx', ['vitest', 'run', '--config', 'scripts/soak/vitest.config.ts'], {
  stdio: 'inherit',
  env: { ...process.env, SOAK_MINUTES: String(minutes), SOAK_SEED: seed, SOAK_REPORT: report },
})
const code = await new Promise((resolve) => vitest.once('exit', (exitCode) => resolve(exitCode ?? 1)))
const result = JSON.parse(await readFile(report, 'utf8').catch(() => 'null'))
if (!result) {
  console.error(`soak: no report (vitest exited ${code})`)
  process.exit(1)
}
console.log(`soak: ${result.schedules} schedules in ${Math.round(result.ms / 1000)} s (seed ${seed}): ${JSON.stringify(result.byKind)}`)
for (const { schedule, lines } of result.violations)
  console.log(`VIOLATION (replay: npm run soak -- --seed ${seed}; schedule ${JSON.stringify(schedule)}):\n  ${lines.join('\n  ')}`)
console.log(`soak: ${result.violations.length} schedules with violations`)
process.exit(result.violations.length > 0 || code !== 0 ? 1 : 0)
