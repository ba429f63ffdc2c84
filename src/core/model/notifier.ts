/**
 * Learns of new builds sooner than polling does (a vwatch long-poll, a Valkey channel). Only a
 * hint to look at the store now: the store is the truth, and polling it never stops.
 */
export interface Notifier {
  /** Where it listens, for the log. */
  readonly name: string
  /** Listens until `signal` aborts, reconnecting with backoff by itself; never rejects. */
  listen(events: NotifierEvents, signal: AbortSignal): Promise<void>
}

interface NotifierEvents {
  /** A new build may be in the store. */
  hint(): void
  /** Say it on every answer or failure: the watch logs only the changes. */
  status(state: 'connected' | 'lost', reason?: string): void
  /** The build timestamp `dest` holds, for notifiers that tell the server what they have. */
  heldVersion(): string | undefined
}
