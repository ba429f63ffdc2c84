import { type Layout, layoutOf } from '../../src/core/store/layout'
import type { StoreLayout } from '../../src/core/store/store'

/**
 * The windows of a concurrent run, named the way the issue names them: an actor's request of one
 * operation on one kind of key. Holding each in turn while the other actors run enumerates the
 * interleavings that matter, as was done by hand to find the cases of issue 16.
 */
export type Operation = 'put' | 'read' | 'list' | 'delete' | 'exists' | 'persist' | 'publish'
export type KeyKind = 'data' | 'entrypoint' | 'manifest' | 'lease' | 'lock' | 'other'
export type RequestType = `${Operation}:${KeyKind}`

/** Whether the hold stops the request before it reaches the store, or stops its answer after the store acted. */
export type Phase = 'before' | 'after'

interface Hold {
  readonly type: RequestType
  readonly phase: Phase
  /** Resolves once the request is held. */
  readonly reached: Promise<void>
  readonly wasReached: boolean
  /** Lets the held request (and any later one) through. */
  release(): void
}

/** What one actor's requests pass through: they are logged, and held or failed as the rules say. */
export interface Gate {
  /** Every request type the actor made, in order. */
  readonly log: RequestType[]
  /** Holds the `nth` request of `type` (1 = the first from now) at `phase`, until released. */
  hold(type: RequestType, options?: { nth?: number; phase?: Phase }): Hold
  /** The `nth` request of `type` fails with `error` instead of reaching the store. */
  fail(type: RequestType, error: () => Error, options?: { nth?: number }): void
  /** Called by a layer around each request, before it is sent and after it was answered. */
  pass(type: RequestType, phase: Phase): Promise<void>
  /** Lets every held request through and drops every rule. */
  releaseAll(): void
}

/** Which kind of key of `app` a store key is. */
export function keyKind(key: string, app: string, storeLayout: StoreLayout, entrypoints: readonly string[] = ['fed-mods.json']): KeyKind {
  const layout: Layout = layoutOf({ layout: storeLayout })
  if (key.startsWith(layout.leasePrefix(app))) return 'lease'
  if (storeLayout === 'versioned' && key.startsWith(`lock:${app}:`)) return 'lock'
  if (key.startsWith(layout.manifestPrefix(app))) return 'manifest'
  const relpath = layout.parseDataKey(app, key)?.relpath
  if (relpath !== undefined) return entrypoints.includes(relpath) ? 'entrypoint' : 'data'
  // A listing names the prefix: the data prefix lists data.
  if (key === layout.dataPrefix(app)) return 'data'
  return 'other'
}

interface Rule {
  type: RequestType
  phase: Phase
  left: number
  act(): Promise<void>
}

export function createGate(): Gate {
  const log: RequestType[] = []
  let rules: Rule[] = []
  const holds: (() => void)[] = []
  return {
    log,
    hold(type, { nth = 1, phase = 'before' } = {}) {
      let release!: () => void
      const released = new Promise<void>((resolve) => (release = resolve))
      holds.push(release)
      let reach!: () => void
      const reached = new Promise<void>((resolve) => (reach = resolve))
      const hold = {
        type,
        phase,
        reached,
        wasReached: false,
        release,
      }
      rules.push({
        type,
        phase,
        left: nth,
        act: async () => {
          hold.wasReached = true
          reach()
          await released
        },
      })
      return hold
    },
    fail(type, error, { nth = 1 } = {}) {
      rules.push({ type, phase: 'before', left: nth, act: async () => Promise.reject(error()) })
    },
    async pass(type, phase) {
      if (phase === 'before') log.push(type)
      for (const rule of rules) {
        if (rule.type !== type || rule.phase !== phase || rule.left <= 0) continue
        if (--rule.left === 0) await rule.act()
      }
    },
    releaseAll() {
      rules = []
      for (const release of holds.splice(0)) release()
    },
  }
}
