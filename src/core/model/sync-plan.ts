/**
 * One planner for every transfer: populate (build → store), pop and watch (store → directory).
 * Each compares what one side wants with what the other side holds, and moves only what differs.
 */

/** What one side knows of a copy of a file. Unknown fields are left out, never guessed. */
export interface HeldFile {
  size?: number
  /** Hex MD5 of the bytes. */
  md5?: string
  contentType?: string
  cacheControl?: string
}

export interface WantedFile extends HeldFile {
  relpath: string
}

export interface SyncPlan<T> {
  /** Held with the same bytes (and the same headers, where the wanted file names them): nothing to do. */
  unchanged: T[]
  /** Not held at all: nothing can be serving them yet, so they go first. */
  added: T[]
  /** Held with other bytes or headers, or held but unknown: they replace what is served. */
  changed: T[]
}

/**
 * Sorts `wanted` by what `held` has. A file is unchanged only when both sides know its MD5 and
 * they agree, sizes agree where both are known, and (unless `headers` is false) every header the
 * wanted file names is held with the same value. Anything unknown counts as changed: a needless transfer costs time, a wrong
 * skip serves the wrong bytes. In the order of `wanted`; it changes nothing but which of two equal
 * MD5 strings an unchanged wanted file holds.
 */
export function planSync<T extends WantedFile>(wanted: readonly T[], held: Pick<ReadonlyMap<string, HeldFile>, 'get'>, { headers = true } = {}): SyncPlan<T> {
  const plan: SyncPlan<T> = { unchanged: [], added: [], changed: [] }
  for (const file of wanted) {
    const copy = held.get(file.relpath)
    if (!copy) plan.added.push(file)
    else if (sameFile(file, copy, headers)) {
      // One string for both sides' equal MD5: a 100,000-file push held each twice (4.8 MB more).
      if (file.md5 === copy.md5) file.md5 = copy.md5
      plan.unchanged.push(file)
    } else plan.changed.push(file)
  }
  return plan
}

function sameFile(wanted: HeldFile, held: HeldFile, headers: boolean): boolean {
  if (!wanted.md5 || !held.md5 || wanted.md5.toLowerCase() !== held.md5.toLowerCase()) return false
  if (wanted.size !== undefined && held.size !== undefined && wanted.size !== held.size) return false
  // A versioned store keeps headers in the manifest, not with the bytes: there only content decides.
  return !headers || (['contentType', 'cacheControl'] as const).every((header) => wanted[header] === undefined || wanted[header] === held[header])
}
