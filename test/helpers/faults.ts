import { readdir } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { collectFiles } from '../../src/core/push/collect-files'
import { type PopulateInput, type PopulateReport, populate } from '../../src/core/push/populate'
import { type PopReport, pop } from '../../src/core/serve/pop'
import type { Logger } from '../../src/core/util/logger'
import { type Options, resolveOptions } from '../../src/options'
import { createStore } from '../../src/stores'

/** Deadlines short enough for tests: a lasting fault fails a command in about a second. */
export const QUICK = { connectTimeout: 300, requestTimeout: 500, retries: 1 } as const

/**
 * The README's bound on one step of a command against a store that stopped answering: every
 * attempt runs out its `requestTimeout`, and the backoff between them sleeps at most
 * 200 ms × 2^attempt (full jitter).
 */
export const stepBoundMs = ({ retries, requestTimeout }: { retries: number; requestTimeout: number }): number =>
  (retries + 1) * requestTimeout + 200 * (2 ** retries - 1)

/** Room for a loaded 2-core machine: process start, event-loop lag, closing the client. */
export const SLACK_MS = 1500

/** A build of `version`: content-hashed chunks and an entrypoint that names them, so a reader can check it is complete. */
export function release(version: string, chunks = 6, extra: Record<string, string | Uint8Array> = {}): Record<string, string | Uint8Array> {
  const files: Record<string, string | Uint8Array> = { ...extra }
  for (let i = 0; i < chunks; i++) files[`js/chunk-${i}.${version}.js`] = `console.log(${JSON.stringify(`${version} ${i}`)})`
  return { ...files, 'fed-mods.json': JSON.stringify({ version, files: Object.keys(files) }) }
}

/** Every warning the core logged, to see which faults it retried. */
export function recordingLogger(onWarn: (line: string) => void = () => {}): Logger & { warnings: string[] } {
  const warnings: string[] = []
  return {
    warnings,
    debug: () => {},
    info: () => {},
    warn: (line: string) => {
      warnings.push(line)
      onWarn(line)
    },
    error: () => {},
  }
}

type Outcome<T> = { ms: number } & ({ report: T; error?: undefined } | { report?: undefined; error: Error & { code?: string } })

async function timed<T>(work: () => Promise<T>): Promise<Outcome<T>> {
  const started = Date.now()
  try {
    const report = await work()
    return { report, ms: Date.now() - started }
  } catch (error) {
    return { error: error as Error, ms: Date.now() - started }
  }
}

/**
 * Pushes `outDir` the way the plugin does (the store built from the options by the real factory,
 * closed after), and says how it ended and how long it took, closing included.
 */
export async function timedPush(
  options: Options & { app: string; store: string; timestamp: number },
  outDir: string,
  input: Partial<PopulateInput> = {},
): Promise<Outcome<PopulateReport>> {
  const resolved = resolveOptions(options, {})
  const files = await collectFiles(outDir)
  return timed(async () => {
    const store = await createStore(resolved.store, resolved)
    try {
      return await populate({ store, options: resolved, files, ...input })
    } finally {
      await store.close()
    }
  })
}

/** Pops `app` into `dest` through a store built from the options, timed like `timedPush`. */
export async function timedPop(options: Options & { app: string; store: string }, dest: string, logger?: Logger): Promise<Outcome<PopReport>> {
  const resolved = resolveOptions(options, {})
  return timed(async () => {
    const store = await createStore(resolved.store, resolved)
    try {
      return await pop({ store, app: resolved.app, dest, retries: resolved.retries, concurrency: resolved.concurrency, logger })
    } finally {
      await store.close()
    }
  })
}

/** What sits beside `dest`: a failed pop must leave no staging directory behind. */
export async function besideDest(dest: string): Promise<string[]> {
  return (await readdir(dirname(dest))).filter((name) => name !== basename(dest))
}
