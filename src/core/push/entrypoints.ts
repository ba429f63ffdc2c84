import { posix } from 'node:path'
import type { Logger } from '../util/logger'
import type { UploadPlan } from './plan'

/** What module federation writes beside its entry map (webpack's and Rspack's `remoteEntry.js`, the `mf-*` manifests). */
const FEDERATION_FILES = /(^|\/)(remoteEntry(\.[^/]*)?\.js|mf-manifest\.json|mf-stats\.json|__federation_[^/]*)$/

/** The entrypoint when `entrypoint` is not set: an app without module federation writes none, and needs none. */
const DEFAULT_ENTRYPOINTS = ['fed-mods.json']

/**
 * A warning for each entrypoint the plan does not publish, where that matters: a build without
 * one is pushed, but nothing announces it. It matters when `entrypoint` was set, when module
 * federation is at work (its files are in the build), when `include`/`exclude` left it out, or when
 * a near miss is found (`federation/fed-mods.json` or `Fed-Mods.json` for `fed-mods.json`, since a
 * federation plugin that writes the entry map into a subfolder is the usual cause). A plain Vite
 * app, which has no entry map, gets none.
 */
export function entrypointWarnings(plan: UploadPlan, entrypoints: readonly string[]): string[] {
  const published = new Set(plan.entrypoints.map((file) => file.relpath))
  const excluded = new Set(plan.excluded.map((file) => file.relpath))
  const relpaths = [...plan.assets, ...plan.excluded].map((file) => file.relpath)
  const expected = entrypoints.join() !== DEFAULT_ENTRYPOINTS.join() || relpaths.some((relpath) => FEDERATION_FILES.test(relpath))
  return entrypoints
    .filter((entrypoint) => !published.has(entrypoint))
    .flatMap((entrypoint) => {
      if (excluded.has(entrypoint))
        return `${entrypoint}, an entrypoint, is left out by \`include\`/\`exclude\`: the build is pushed without it. Let it through, or drop it from \`entrypoint\`.`
      const name = posix.basename(entrypoint).toLowerCase()
      const nearMisses = relpaths.filter((relpath) => posix.basename(relpath).toLowerCase() === name)
      if (nearMisses.length === 0 && !expected) return []
      const found =
        nearMisses.length > 0
          ? `Found ${nearMisses.slice(0, 3).join(', ')}: set \`entrypoint\` to it.`
          : `No **/${posix.basename(entrypoint)} either: check what the build writes, or set \`entrypoint\`.`
      return `${entrypoint}, an entrypoint, is not in the build: it is pushed without one. ${found}`
    })
}

/** Warnings already given by this process: a watched build says each once, not on every rebuild. */
const warned = new Set<string>()

/** Logs the {@link entrypointWarnings} of a plan that this process has not logged yet. */
export function warnOfEntrypoints(plan: UploadPlan, entrypoints: readonly string[], logger: Logger): void {
  for (const warning of entrypointWarnings(plan, entrypoints)) {
    if (!warned.has(warning)) logger.warn(warning)
    warned.add(warning)
  }
}
