import type { Readable } from 'node:stream'
import type { Store, StoreEntry } from '../../src/core/store/store'
import { type Gate, keyKind, type Operation, type RequestType } from './holds'

/**
 * A real store whose every request passes `gate` first (and its answer after): one actor's view of
 * the store, for the actors that run in this process (core functions against local, S3 or Valkey).
 * The HTTP proxy in `hold-proxy.ts` does the same for actors in another process (the built CLI).
 */
export function gatedStore(store: Store, app: string, gate: Gate, entrypoints?: readonly string[]): Store {
  const typeOf = (operation: Operation, key: string): RequestType => `${operation}:${keyKind(key, app, store.layout, entrypoints)}`
  /** One request of `operation` on the kind of key `keys[0]` (a batch is of one kind in every caller). */
  const around = async <T>(operation: Operation, key: string, request: () => Promise<T>): Promise<T> => {
    const type = typeOf(operation, key)
    await gate.pass(type, 'before')
    const answer = await request()
    await gate.pass(type, 'after')
    return answer
  }
  const gated: Store = {
    kind: store.kind,
    layout: store.layout,
    isTransient: store.isTransient,
    display: store.display,
    releasesBodies: store.releasesBodies,
    concurrency: store.concurrency,
    conditionalWrites: store.conditionalWrites,
    put: (key, body, options) => around('put', key, () => store.put(key, body, options)),
    read: (key): Promise<Readable | undefined> => around('read', key, () => store.read(key)),
    async *list(prefix: string): AsyncIterable<StoreEntry> {
      const type = typeOf('list', prefix)
      await gate.pass(type, 'before')
      yield* store.list(prefix)
      await gate.pass(type, 'after')
    },
    delete: (keys, options) => around('delete', keys[0] ?? '', () => store.delete(keys, options)),
    close: () => store.close(),
  }
  if (store.bufferedBytes) gated.bufferedBytes = (size) => store.bufferedBytes!(size)
  if (store.exists) gated.exists = (keys) => around('exists', keys[0] ?? '', () => store.exists!(keys))
  if (store.persist) gated.persist = (keys) => around('persist', keys[0] ?? '', () => store.persist!(keys))
  if (store.publish) gated.publish = (channel, message) => around('publish', channel, () => store.publish!(channel, message))
  return gated
}
