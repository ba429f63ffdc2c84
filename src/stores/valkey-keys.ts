import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { Cluster, Redis } from 'iovalkey'
import { PushCacheError } from '../core/model/errors'
import { type DeleteOptions, PreconditionFailed, type PutBody, type PutOptions, type PutResult, type Store } from '../core/store/store'
import { forEachLimited } from '../core/util/concurrency'
import type { ValkeyConnection } from './valkey-connection'
import type { ValkeyIndex } from './valkey-index'

/** Keys per pipelined batch of UNLINK/PERSIST/EXISTS. */
const BATCH = 1000
/**
 * Batches in flight at once: a build of up to 16,000 files is persisted (or checked) in one round
 * trip rather than one per batch, and a prune of 300,000 keys holds no more than 16,000 commands.
 */
const BATCHES_IN_FLIGHT = 16
/** What Redis and Valkey accept by default when CONFIG GET is not allowed. */
const DEFAULT_MAX_BULK = 512 * 1024 * 1024

/**
 * Compare-and-swap on a value, one key so one slot in a cluster: the etag of a Valkey value is its
 * SHA-1, which the server computes itself. A missing key hashes as the empty string, which no etag
 * we hand out names.
 */
const REPLACE_IF_MATCH = `if redis.sha1hex(redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1`
const DELETE_IF_MATCH = `if redis.sha1hex(redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1])
return 1`

const sha1 = (value: Buffer) => createHash('sha1').update(value).digest('hex')

/** One SET of a whole value, conditional when asked: the etag it returns is the value's SHA-1, as the server computes it. */
async function setValue(
  valkey: Redis | Cluster,
  guard: ValkeyConnection['guard'],
  key: string,
  value: Buffer,
  { expiresIn, ifNoneMatch, ifMatch }: PutOptions,
): Promise<PutResult> {
  if (ifMatch !== undefined) {
    // https://valkey.io/commands/eval/
    const replaced = await guard(valkey.eval(REPLACE_IF_MATCH, 1, key, ifMatch, value, expiresIn ? String(expiresIn) : ''))
    if (replaced !== 1) throw new PreconditionFailed(key)
    return { etag: sha1(value) }
  }
  if (ifNoneMatch) {
    // https://valkey.io/commands/set/ NX: nothing is set (null) when the key exists.
    const set = await guard(expiresIn ? valkey.set(key, value, 'EX', expiresIn, 'NX') : valkey.set(key, value, 'NX'))
    if (set === null) throw new PreconditionFailed(key)
    return { etag: sha1(value) }
  }
  await guard(expiresIn ? valkey.set(key, value, 'EX', expiresIn) : valkey.set(key, value))
  return {}
}

/**
 * Writes, expiries and deletes of whole keys: what a push and a prune send. Every write goes with
 * its key's index entry; a delete leaves the entry, which the next listing drops once it is stale
 * (see valkey-index.ts: dropping it here could race a write of the same key).
 */
export function valkeyKeyCommands(
  { client, guard }: ValkeyConnection,
  index: ValkeyIndex,
): Pick<Store, 'put' | 'exists' | 'delete'> & Required<Pick<Store, 'persist'>> {
  let maxBulk: Promise<number> | undefined
  /** The server's largest accepted value, asked once. */
  async function maxValueSize(): Promise<number> {
    maxBulk ??= client()
      .then((valkey) => valkey.config('GET', 'proto-max-bulk-len'))
      .then(
        (reply) => Number((reply as string[])[1]) || DEFAULT_MAX_BULK,
        () => DEFAULT_MAX_BULK,
      )
    return maxBulk
  }

  /**
   * Runs `command` over `keys`, `BATCH` at a time, `BATCHES_IN_FLIGHT` batches at once; auto-pipelining
   * sends what is ready together (per node in a cluster). Results are in the order of `keys`.
   */
  async function eachKey<T>(keys: readonly string[], command: (valkey: Redis | Cluster, key: string) => Promise<T>): Promise<T[]> {
    const valkey = await client()
    const results: T[] = new Array(keys.length)
    const starts = Array.from({ length: Math.ceil(keys.length / BATCH) }, (_, batch) => batch * BATCH)
    await forEachLimited(starts, BATCHES_IN_FLIGHT, async (start) => {
      const replies = await guard(Promise.all(keys.slice(start, start + BATCH).map((key) => command(valkey, key))))
      for (const [offset, reply] of replies.entries()) results[start + offset] = reply
    })
    return results
  }

  return {
    // https://valkey.io/commands/set/ ; a value is sent whole, so the file is read into memory.
    async put(key: string, body: PutBody, putOptions: PutOptions = {}): Promise<PutResult> {
      const size = 'file' in body ? body.size : body.byteLength
      const limit = await maxValueSize()
      if (size > limit)
        throw new PushCacheError(
          'UPLOAD_FAILED',
          `${key} is ${size} bytes, above the ${limit} bytes the server accepts in one value (proto-max-bulk-len). Raise proto-max-bulk-len on the server or leave the file out with \`exclude\`.`,
        )
      const value = 'file' in body ? await readFile(body.file) : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
      const valkey = await client()
      return index.written(key, Boolean(putOptions.expiresIn), () => setValue(valkey, guard, key, value, putOptions))
    },

    // https://valkey.io/commands/exists/
    async exists(keys: readonly string[]) {
      return (await eachKey(keys, (valkey, key) => valkey.exists(key))).map((count) => count === 1)
    },

    // https://valkey.io/commands/unlink/ ; one key per command, so a cluster never sees a cross-slot request.
    async delete(keys: readonly string[], { ifMatch }: DeleteOptions = {}) {
      if (ifMatch !== undefined) {
        const valkey = await client()
        for (const key of keys) if ((await guard(valkey.eval(DELETE_IF_MATCH, 1, key, ifMatch))) !== 1) throw new PreconditionFailed(key)
        return
      }
      await eachKey(keys, (valkey, key) => valkey.unlink(key))
    },

    // https://valkey.io/commands/persist/ ; 0 means "no expiry" or "no key": EXISTS tells which.
    async persist(keys: readonly string[]) {
      const lost = await eachKey(keys, async (valkey, key) => ((await valkey.persist(key)) === 1 || (await valkey.exists(key)) === 1 ? undefined : key))
      return lost.filter((key) => key !== undefined)
    },
  }
}
