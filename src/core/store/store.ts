import type { Readable } from 'node:stream'

/**
 * How a store lays out builds. Layout rules (key names, ordering, pruning) live in core; a store
 * only declares which family it belongs to, and core reads that through `layoutOf` alone.
 * - `flat`: one object per path, a new build overwrites (`data/<app>/<path>`, S3 and local).
 * - `versioned`: one key per build and path (`data:<app>:<ts>:<path>`, Valkey as valpop writes it).
 */
export type StoreLayout = 'flat' | 'versioned'

/** A file on disk (streamed, re-opened on every attempt) or bytes already in memory. */
export type PutBody = Uint8Array | { file: string; size: number }

export interface PutOptions {
  contentType?: string
  cacheControl?: string
  /** User metadata (`x-amz-meta-*` on S3). Keys are lower-case ASCII. */
  metadata?: Record<string, string>
  /**
   * Seconds after which the key disappears unless {@link Store.persist} is called. Versioned
   * stores use it so that a crashed populate cannot leak keys; flat stores ignore it.
   */
  expiresIn?: number
  /**
   * Conditional writes, on stores that say {@link Store.conditionalWrites}: `'*'` creates the key
   * only if it does not exist; an etag replaces it only if it still holds what that put returned.
   * Otherwise the put throws {@link PreconditionFailed} and writes nothing.
   */
  ifNoneMatch?: '*'
  ifMatch?: string
  /** The body's MD5 (hex) when core already knows it: a store that sends it (S3's Content-MD5) need not hash the bytes again. */
  md5?: string
}

export interface DeleteOptions {
  /** Deletes the one key only if it still holds what the put that returned this etag wrote; else {@link PreconditionFailed}. */
  ifMatch?: string
}

/** What every store throws, whatever its native answer (HTTP 412, a Valkey `NX` that set nothing, `EEXIST`), when a condition does not hold. */
export class PreconditionFailed extends Error {
  override name = 'PreconditionFailed'
  constructor(readonly key: string) {
    super(`${key} is not in the state the write expected`)
  }
}

/** What a store tells of an object it just wrote. */
export interface PutResult {
  /** The object's version tag, as {@link StoreEntry.etag} lists it; a later listing with the same tag means the same bytes. */
  etag?: string
  /** The hex MD5 of the whole body, when the store hashed every byte it sent (S3's multipart upload): core then does not read the file again to hash it. */
  md5?: string
}

export interface StoreEntry {
  key: string
  /** Bytes, when the store knows it cheaply. */
  size?: number
  lastModified?: Date
  /**
   * An opaque version tag that changes whenever the object is written (S3 ETag, quotes stripped;
   * a local file's inode and mtime). Not always a content hash.
   */
  etag?: string
}

/**
 * The whole contract between core and a backend. Keys are full keys (`data/app/x.js`); every
 * method may throw, and core retries a thrown error when {@link Store.isTransient} says so.
 */
export interface Store {
  /** `s3`, `local`, `valkey`: used in messages and reports. */
  readonly kind: string
  readonly layout: StoreLayout
  /** Where the store points, with every secret redacted: safe to print. */
  readonly display: string
  /**
   * Whether another attempt at a request that threw `error` may succeed: the store knows its own
   * errors (S3's 5xx and `SlowDown`, Valkey's `LOADING`). A function, not a method: core hands it on.
   */
  readonly isTransient: (error: unknown) => boolean
  /**
   * Writes an object. Bodies on disk are read by the store; `bufferedBytes` says how much of one it
   * holds in memory at once, so that core can bound the bytes in flight.
   */
  put(key: string, body: PutBody, options?: PutOptions): Promise<PutResult>
  /** Bytes held in memory while a body of `size` bytes is put (default: all of them). */
  bufferedBytes?(size: number): number
  /**
   * Set when `put` keeps no hold on a body once it settled, so that core may read the next file into
   * the same buffer. A client that may still send a command that timed out must leave it unset.
   */
  readonly releasesBodies?: boolean
  /**
   * Versioned stores: how long a build may take to write, in seconds. Its keys are written with
   * this expiry and persisted once the build is complete, so that a crashed push leaks nothing;
   * `option` names the setting that raises it, for messages (`valkey.lockTtl`).
   */
  readonly pendingExpiry?: { seconds: number; option: string }
  /**
   * Whether `put` honours `ifNoneMatch`/`ifMatch` and `delete` honours `ifMatch` atomically. A
   * store without them still writes the key; core then reads it back to learn who holds it.
   */
  readonly conditionalWrites?: boolean
  /** Uploads in flight that suit the store when the user names none (default 16). */
  readonly concurrency?: number
  /**
   * How far a push may raise `concurrency` while it probes a long link (default: no higher). Only
   * stores whose requests wait on round trips gain from more in flight.
   */
  readonly maxConcurrency?: number
  /**
   * The quickest request answered so far, in milliseconds from sending it to its answer's first
   * byte: the link's round trip, as near as the store has seen it (undefined before any answer).
   * Core starts its uploads and downloads that much wider. Stores whose requests do not wait on
   * round trips one by one leave it out.
   */
  roundTripMs?(): number | undefined
  /** Whether each key exists, cheaper than listing for stores with no prefix listing (Valkey). */
  exists?(keys: readonly string[]): Promise<boolean[]>
  /** The value as a stream, or `undefined` when the key does not exist. */
  read(key: string): Promise<Readable | undefined>
  /** Every key that starts with `prefix` (a plain string, not a pattern), in no particular order. */
  list(prefix: string): AsyncIterable<StoreEntry>
  /**
   * The keys that start with `prefix` and sort after `startAfter`, in the order of their UTF-8
   * bytes (S3's): ranges of one prefix listed at once, each stopped where the next starts.
   * `maxKeys`, how many keys the first page should hold at most (the rest follow in later pages):
   * about as many as the range holds, so that a page does not list the next range's keys too.
   */
  listAfter?(prefix: string, startAfter: string | undefined, maxKeys?: number): AsyncIterable<StoreEntry>
  /** Deletes the keys; a key that does not exist is not an error. */
  delete(keys: readonly string[], options?: DeleteOptions): Promise<void>
  /** Removes the expiry of keys written with `expiresIn`; resolves to the keys that no longer exist. */
  persist?(keys: readonly string[]): Promise<string[]>
  /** Sends `message` to the subscribers of `channel`; resolves to how many got it. Only stores with a message bus (Valkey) have it. */
  publish?(channel: string, message: string): Promise<number>
  /** Releases connections so the process can exit. */
  close(): Promise<void>
}
