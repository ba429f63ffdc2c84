/** A build as the pruner sees it: when it was made and which relpaths it names. */
export interface BuildRecord {
  timestamp: number
  files: readonly string[]
}

export interface PruneRule {
  /** Now, in seconds. */
  now: number
  olderThanSeconds: number
  /** The newest `keep` builds survive whatever their age; never less than 1. */
  keep: number
  /** Relpaths never deleted (the entrypoints: a client may hold them at any time). */
  protect: readonly string[]
}

/** Newest first; equal timestamps keep their order. */
const newestFirst = <T extends BuildRecord>(builds: readonly T[]): T[] => [...builds].sort((a, b) => b.timestamp - a.timestamp)

/**
 * valpop's `cleanup` rule: a build dies only when it is older than the threshold **and** not
 * among the newest `keep`.
 */
export function partitionBuilds<T extends BuildRecord>(builds: readonly T[], rule: Omit<PruneRule, 'protect'>): { surviving: T[]; dying: T[] } {
  const keep = Math.max(1, rule.keep)
  const surviving: T[] = []
  const dying: T[] = []
  newestFirst(builds).forEach((build, position) => {
    const old = rule.now - build.timestamp > rule.olderThanSeconds
    ;(position >= keep && old ? dying : surviving).push(build)
  })
  return { surviving, dying }
}

/**
 * Flat layout (S3, local): one object per relpath, shared by every build that names it. Deletes
 * the files of dying builds that no surviving build names and that are not protected.
 */
export function planFlatPrune<T extends BuildRecord>(builds: readonly T[], rule: PruneRule): { surviving: T[]; dying: T[]; deleteFiles: string[] } {
  const { surviving, dying } = partitionBuilds(builds, rule)
  const kept = new Set([...rule.protect, ...surviving.flatMap((build) => build.files)])
  const deleteFiles = [...new Set(dying.flatMap((build) => build.files))].filter((file) => !kept.has(file)).sort()
  return { surviving, dying, deleteFiles }
}

/**
 * Versioned layout (Valkey): one key per build and relpath. A dying build loses its keys, except
 * the newest version of each relpath, which stays whatever its age (valpop's promise: a file a
 * later build did not rewrite is never lost).
 *
 * Builds are listed from their manifests, so a dying build that still holds such a version must
 * keep a manifest or the version becomes invisible: it `shrinks` to the files it still holds. One
 * that holds nothing else dies; one whose every version is still the newest stays whole.
 */
export function planVersionedPrune<T extends BuildRecord>(
  builds: readonly T[],
  rule: Omit<PruneRule, 'protect'>,
): { surviving: T[]; dying: T[]; shrinking: { build: T; files: string[] }[]; deleteVersions: { timestamp: number; relpath: string }[] } {
  const partition = partitionBuilds(builds, rule)
  const newestVersion = new Map<string, number>()
  for (const build of builds) for (const file of build.files) newestVersion.set(file, Math.max(newestVersion.get(file) ?? -1, build.timestamp))
  const plan = {
    surviving: partition.surviving,
    dying: [] as T[],
    shrinking: [] as { build: T; files: string[] }[],
    deleteVersions: [] as { timestamp: number; relpath: string }[],
  }
  for (const build of partition.dying) {
    const held = build.files.filter((relpath) => newestVersion.get(relpath) === build.timestamp)
    const older = build.files.filter((relpath) => newestVersion.get(relpath) !== build.timestamp)
    plan.deleteVersions.push(...older.map((relpath) => ({ timestamp: build.timestamp, relpath })))
    if (held.length === 0) plan.dying.push(build)
    else if (older.length === 0) plan.surviving.push(build)
    else plan.shrinking.push({ build, files: held })
  }
  return plan
}
