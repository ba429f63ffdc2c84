// Runs one command as a child process and measures it: wall time here, CPU seconds and peak RSS
// from GNU time (`/usr/bin/time`), which reads them from the kernel when the child exits.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

const GNU_TIME = '/usr/bin/time'
/** Without GNU time the bench still times every run, but reports no CPU seconds and no peak RSS. */
export const canMeasureResources = existsSync(GNU_TIME)
const STDOUT_LIMIT = 4 * 1024 * 1024

/** Children running now, so that a signal handler can kill them. */
const running = new Set()

/** Each child leads its own process group: killing the group also ends whatever it started. */
function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // already gone
  }
}

export function killRunning() {
  for (const child of running) killGroup(child)
}

/**
 * Runs `command args` with `env`, killed after `timeoutMs`. Resolves to `{ wallS, cpuS, rssMb, stdout }`
 * (CPU: user + system seconds of the child and every process it waited for; RSS: the largest of
 * them, in MiB); rejects with the end of its stderr when it fails.
 */
export async function measure(command, args, { env, timeoutMs, scratch }) {
  const timeFile = join(scratch, `time-${process.pid}.txt`)
  const [file, argv] = canMeasureResources ? [GNU_TIME, ['-f', '%e %U %S %M', '-o', timeFile, command, ...args]] : [command, args]
  const started = performance.now()
  const child = spawn(file, argv, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    if (stdout.length < STDOUT_LIMIT) stdout += chunk
  })
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000)
  })
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    killGroup(child)
  }, timeoutMs)
  const exit = await new Promise((resolve) => {
    child.once('error', (error) => {
      stderr += error.message
      resolve('error')
    })
    child.once('close', (code, signal) => resolve(code ?? signal))
  })
  clearTimeout(timer)
  running.delete(child)
  const wallS = (performance.now() - started) / 1000
  const what = [command, ...args].join(' ')
  if (timedOut) throw new Error(`${what} ran longer than ${timeoutMs / 1000} s and was killed (raise --timeout if the machine is slow)`)
  if (exit !== 0) throw new Error(`${what} failed (${exit}):\n${stderr.trim().split('\n').slice(-8).join('\n')}`)
  if (!canMeasureResources) return { wallS, cpuS: null, rssMb: null, stdout }
  const [, user, system, rssKb] = (await readFile(timeFile, 'utf8')).trim().split('\n').at(-1).split(' ').map(Number)
  return { wallS, cpuS: user + system, rssMb: rssKb / 1024, stdout }
}
