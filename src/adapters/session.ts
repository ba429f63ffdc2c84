import { isAbsolute, relative, resolve, sep } from 'node:path'
import { describeError } from '../core/errors'
import { collectFiles, toPosix } from '../core/files'
import { createLogger, type Logger } from '../core/logger'
import { type Options, type ResolvedOptions, resolveOptions } from '../core/options'
import type { BuildFile } from '../core/plan'
import { pushFiles } from '../core/push'

/**
 * The one piece every adapter shares: collect what a build wrote (possibly over several outputs),
 * then push it once when the build is over.
 */
export interface PushSession {
  readonly logger: Logger
  /** A build starts: forget the last one's outputs and stamp this one's start time. */
  start(): void
  /** Files a build wrote, relative to `outDir`. */
  collect(outDir: string, files: Iterable<string>): void
  /** The build is over and succeeded: push what was collected (nothing if nothing was). */
  finish(watchMode: boolean): Promise<void>
}

export function createPushSession(userOptions: Options | undefined, options: ResolvedOptions, tag: string): PushSession {
  const logger = createLogger(tag, options.debug)
  let outputs = new Map<string, Set<string>>()
  let startedAt = Date.now()
  let watchNoticeLogged = false

  return {
    logger,
    start() {
      outputs = new Map()
      startedAt = Date.now()
    },
    collect(outDir, files) {
      const dir = resolve(outDir)
      const known = outputs.get(dir) ?? new Set()
      for (const file of files) known.add(file)
      outputs.set(dir, known)
    },
    async finish(watchMode) {
      const collected = outputs
      outputs = new Map()
      if (collected.size === 0) return
      if (watchMode && !options.watch) {
        if (!watchNoticeLogged) logger.info('watch mode: builds are not pushed (set `watch: true` to push every rebuild)')
        watchNoticeLogged = true
        return
      }
      try {
        // Options were checked at config time; resolving again only stamps this build's start
        // (each rebuild of a watched build is a build of its own), unless a timestamp was given.
        const buildOptions = resolveOptions(userOptions, process.env, () => startedAt)
        await pushFiles({ files: await collectBuild(collected, buildOptions.scan, logger), options: buildOptions, logger })
      } catch (error) {
        if (options.failOnError) throw error
        logger.error(`${describeError(error)} The build goes on because \`failOnError\` is false.`)
      }
    },
  }
}

/**
 * The files of one build, relative to one directory: the output directory, or the common directory
 * of several (Rollup's `output: [...]`), listing only what lies in the output directories themselves.
 */
async function collectBuild(outputs: Map<string, Set<string>>, scan: ResolvedOptions['scan'], logger: Logger): Promise<BuildFile[]> {
  const root = [...outputs.keys()].reduce(commonDirectory)
  const perOutput = await Promise.all([...outputs].map(([dir, files]) => collectFiles(dir, scan === 'outDir' ? undefined : [...files], logger)))
  return perOutput.flat().map((file) => ({ ...file, relpath: toPosix(relative(root, file.path)) }))
}

function commonDirectory(a: string, b: string): string {
  const outside = (dir: string) => {
    const rel = relative(dir, b)
    return rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)
  }
  let dir = a
  while (outside(dir)) dir = resolve(dir, '..')
  return dir
}
