/** A build as the pruner sees it: when it was made and which relpaths it names. */
export interface BuildRecord {
  timestamp: number
  files: readonly string[]
  /** Versioned stores: for files found unchanged in an older build, that build's timestamp (the key's version). */
  versions?: Readonly<Record<string, number>>
  /** Versioned stores: found by scanning data keys, without a manifest (written by valpop alone). */
  scanned?: boolean
}

export interface PruneRule {
  /** Now, in seconds. */
  now: number
  olderThanSeconds: number
  /** The newest `keep` builds survive whatever their age; never less than 1. */
  keep: number
  /** Flat stores: relpaths never deleted (the entrypoints: a client may hold them at any time; the served build's files). */
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
 * Versioned layout (Valkey): one key per build and relpath, and a build names the key of each of
 * its files (its own, or an older build's it found unchanged). A key dies with the last build that
 * names it: the keys that dying builds name and no surviving build names go. No push runs
 * meanwhile (the prune holds the app's writer lock), so none relies on a key that goes.
 *
 * Builds that valpop wrote without a manifest keep valpop's promise: the newest version of each
 * relpath stays, whatever its age.
 */
export function planVersionedPrune<T extends BuildRecord>(
  builds: readonly T[],
  rule: Omit<PruneRule, 'protect'>,
): { surviving: T[]; dying: T[]; deleteVersions: { timestamp: number; relpath: string }[] } {
  const { surviving, dying: aged } = partitionBuilds(builds, rule)
  const versionOf = (build: BuildRecord, relpath: string) => build.versions?.[relpath] ?? build.timestamp
  const id = (timestamp: number, relpath: string) => `${timestamp}\0${relpath}`
  const named = new Set(surviving.flatMap((build) => build.files.map((relpath) => id(versionOf(build, relpath), relpath))))
  const newestVersion = new Map<string, number>()
  for (const build of builds)
    for (const relpath of build.files) newestVersion.set(relpath, Math.max(newestVersion.get(relpath) ?? -1, versionOf(build, relpath)))
  const deleteVersions = new Map<string, { timestamp: number; relpath: string }>()
  const dying: T[] = []
  for (const build of aged) {
    const valpopKeeps = build.files.filter((relpath) => build.scanned && newestVersion.get(relpath) === build.timestamp)
    // A scanned build is its keys: one that keeps any is still there.
    ;(valpopKeeps.length > 0 ? surviving : dying).push(build)
    for (const relpath of build.files) {
      const timestamp = versionOf(build, relpath)
      if (!named.has(id(timestamp, relpath)) && !valpopKeeps.includes(relpath)) deleteVersions.set(id(timestamp, relpath), { timestamp, relpath })
    }
  }
  return { surviving, dying, deleteVersions: [...deleteVersions.values()] }
}
