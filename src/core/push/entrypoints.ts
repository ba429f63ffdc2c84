import { posix } from 'node:path'
import type { UploadPlan } from './plan'

/**
 * A warning for each entrypoint the plan does not publish: a build without one is pushed, but
 * nothing announces it. Near misses are named (`federation/fed-mods.json` for `fed-mods.json`),
 * since a federation plugin that writes the entry map into a subfolder is the usual cause.
 */
export function entrypointWarnings(plan: UploadPlan, entrypoints: readonly string[]): string[] {
  const published = new Set(plan.entrypoints.map((file) => file.relpath))
  const excluded = new Set(plan.excluded.map((file) => file.relpath))
  const relpaths = [...plan.assets, ...plan.excluded].map((file) => file.relpath)
  return entrypoints
    .filter((entrypoint) => !published.has(entrypoint))
    .map((entrypoint) => {
      if (excluded.has(entrypoint))
        return `${entrypoint}, an entrypoint, is left out by \`include\`/\`exclude\`: the build is pushed without it. Let it through, or drop it from \`entrypoint\`.`
      const name = posix.basename(entrypoint).toLowerCase()
      const nearMisses = relpaths.filter((relpath) => posix.basename(relpath).toLowerCase() === name)
      const found =
        nearMisses.length > 0
          ? `Found ${nearMisses.slice(0, 3).join(', ')}: set \`entrypoint\` to it.`
          : `No **/${posix.basename(entrypoint)} either: check what the build writes, or set \`entrypoint\`.`
      return `${entrypoint}, an entrypoint, is not in the build: it is pushed without one. ${found}`
    })
}
