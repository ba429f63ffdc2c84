import { setTimeout as sleep } from 'node:timers/promises'
import { createGate, type Gate, type Phase, type RequestType } from './holds'
import type { Violation } from './invariants'

/** How an actor's run ended. */
type Outcome = { ok: true } | { ok: false; error: Error & { code?: string } }

/** A concurrent run to enumerate: one actor is held at each of its request types in turn while the others run. */
export interface Scenario<W> {
  /** A fresh world for one window: stores, the builds already pushed, `dest`. */
  setup(): Promise<W>
  /** The actor whose requests are held; every request it makes must go through `gate`. */
  held(world: W, gate: Gate): Promise<unknown>
  /** What runs, to its end, while the held actor waits. */
  others(world: W): Promise<unknown>
  /** The invariants broken once both settled. */
  check(world: W, outcome: Outcome): Promise<Violation[]>
  teardown(world: W): Promise<void>
}

/** One interleaving: where the actor was held, how it ended, what broke. */
export interface Window {
  type: RequestType
  phase: Phase
  /** False when the actor finished without making that request (it depends on the store's state). */
  reached: boolean
  outcome: Outcome
  violations: Violation[]
}

const settle = (work: Promise<unknown>): Promise<Outcome> =>
  work.then(
    () => ({ ok: true }) as const,
    (error: Error) => ({ ok: false, error }) as const,
  )

/**
 * Runs `scenario` once unheld to learn the request types its held actor makes, then once per type
 * and phase: the actor is held at the first request of that type (or, with `fail`, that request
 * fails with `fail()` once it was reached), the others run (at most
 * `othersMs`: one that waits for the held actor, as a second writer of a `dest` does, is let go on),
 * `phasesOf(type)` (by default `phases`) telling where each type is held,
 * the hold is released, and the invariants are checked. Bounded: one window per request type and
 * phase, each window bounded by the actors' own deadlines.
 */
export async function enumerateWindows<W>(
  scenario: Scenario<W>,
  {
    phases = ['before'] as Phase[],
    othersMs = 20_000,
    fail,
    phasesOf = () => phases,
  }: { phases?: Phase[]; othersMs?: number; fail?: () => Error; phasesOf?: (type: RequestType) => Phase[] } = {},
): Promise<Window[]> {
  const probe = await scenario.setup()
  const probeGate = createGate()
  try {
    await settle(scenario.held(probe, probeGate))
  } finally {
    await scenario.teardown(probe)
  }
  const types = [...new Set(probeGate.log)]
  const windows: Window[] = []
  for (const type of types)
    for (const phase of phasesOf(type)) {
      const world = await scenario.setup()
      try {
        const gate = createGate()
        const hold = gate.hold(type, { phase })
        // A failure at that request instead: the hold then only tells whether it was reached.
        if (fail) gate.fail(type, fail)
        const running = settle(scenario.held(world, gate))
        await Promise.race([hold.reached, running])
        const others = hold.wasReached ? settle(scenario.others(world)) : undefined
        if (others) await Promise.race([others, sleep(othersMs)])
        gate.releaseAll()
        const outcome = await running
        await others
        windows.push({ type, phase, reached: hold.wasReached, outcome, violations: await scenario.check(world, outcome) })
      } finally {
        await scenario.teardown(world)
      }
    }
  // The counts the README gives: read them from the test output.
  console.info(`${windows.length} windows (${windows.filter((window) => window.reached).length} reached)${fail ? ', a failure at each' : ''}`)
  return windows
}

/** The windows that broke an invariant, one line each, for an assertion message. */
export const broken = (windows: readonly Window[]): string[] =>
  windows.flatMap((window) => window.violations.map((violation) => `held at ${window.type} (${window.phase}): ${violation.invariant} ${violation.detail}`))
