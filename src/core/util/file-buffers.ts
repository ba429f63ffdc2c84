import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'

const KIB = 1024
/** The smallest buffer handed out: below it, size classes would only multiply the free lists. */
const SMALLEST = 16 * KIB
/** Bytes of free buffers kept for the next files; what is given back beyond it is left to the GC. */
const MAX_SPARE_BYTES = 4 * KIB * KIB
/** The largest buffer kept: larger files are few, and a spare one would hold memory the small ones cannot use. */
const LARGEST_KEPT = KIB * KIB

/**
 * Buffers for file contents, handed from one file to the next. A push reads its whole build once or
 * twice; a fresh buffer per file is garbage the size of the build, and V8 frees such memory only
 * when a full collection comes, so the process swells by tens of MiB for no work. Buffers come in
 * power-of-two sizes, so that one freed by any file fits most of the next ones.
 */
const spare = new Map<number, ArrayBuffer[]>()
let spareBytes = 0

const sizeClass = (size: number) => Math.max(SMALLEST, 2 ** Math.ceil(Math.log2(size)))

/** A buffer of `size` bytes (contents undefined); hand it back with {@link giveBack} when done. */
export function takeBuffer(size: number): Buffer {
  const capacity = sizeClass(size)
  const reused = spare.get(capacity)?.pop()
  if (reused) spareBytes -= capacity
  return Buffer.from(reused ?? new ArrayBuffer(capacity), 0, size)
}

/** Returns a buffer from {@link takeBuffer}: nothing may read or write it afterwards. */
export function giveBack(buffer: Buffer): void {
  const whole = buffer.buffer as ArrayBuffer
  if (whole.byteLength > LARGEST_KEPT || spareBytes + whole.byteLength > MAX_SPARE_BYTES) return
  spareBytes += whole.byteLength
  const list = spare.get(whole.byteLength)
  if (list) list.push(whole)
  else spare.set(whole.byteLength, [whole])
}

/** Drops every spare buffer: a push is over, and the process (a bundler in watch mode) lives on. */
export function dropSpareBuffers(): void {
  spare.clear()
  spareBytes = 0
}

const changedWhilePushed = (path: string, what: string) => new Error(`${path} changed while it was pushed: ${what}`)
const sizeChanged = (path: string, now: number, size: number) => changedWhilePushed(path, `it holds ${now} bytes, not the ${size} bytes collected`)
const endedEarly = (path: string, missing: number) => changedWhilePushed(path, `it ended ${missing} bytes early`)

/** Bytes read at a time by {@link readChunks} once a file proved larger than its first read. */
const CHUNK = 256 * KIB

/**
 * Reads a whole file through pooled buffers, a chunk at a time, and hands each chunk to `visit`,
 * which must be done with it when it returns or resolves. `wanted` is asked between chunks:
 * resolves false when it said no. The first read takes the smallest buffer, which holds most files
 * of a build: a push hashes 16 files at once after writing them, and a 256 KiB buffer each held
 * ~4 MiB (and as much again kept spare) for files of a few hundred bytes.
 */
export async function readChunks(path: string, visit: (chunk: Buffer) => unknown, wanted: () => boolean = () => true): Promise<boolean> {
  const file = await open(path)
  let chunk = takeBuffer(SMALLEST)
  try {
    for (let position = 0; ; ) {
      const { bytesRead } = await file.read(chunk, 0, chunk.byteLength, position)
      await visit(chunk.subarray(0, bytesRead))
      position += bytesRead
      // A regular file reads short only at its end.
      if (bytesRead < chunk.byteLength) return true
      if (!wanted()) return false
      if (chunk.byteLength < CHUNK) {
        giveBack(chunk)
        chunk = takeBuffer(CHUNK)
      }
    }
  } finally {
    await file.close()
    giveBack(chunk)
  }
}

/**
 * A file opened for reading, which must still hold `size` bytes: the plan and the manifest speak
 * of `size` bytes. The caller closes it.
 */
export async function openSized(path: string, size: number): Promise<FileHandle> {
  const file = await open(path)
  try {
    const { size: now } = await file.stat()
    if (now !== size) throw sizeChanged(path, now, size)
    return file
  } catch (error) {
    await file.close()
    throw error
  }
}

/** Fills `bytes` from the file at `path`, open as `file`, from `position`, in as few reads as the kernel allows. */
export async function readInto(file: FileHandle, path: string, bytes: Buffer, position: number): Promise<void> {
  for (let filled = 0; filled < bytes.byteLength; ) {
    const { bytesRead } = await file.read(bytes, filled, bytes.byteLength - filled, position + filled)
    if (bytesRead === 0) throw endedEarly(path, bytes.byteLength - filled)
    filled += bytesRead
  }
}

/**
 * Fills `bytes` with the whole file at `path`, which must hold that many bytes, without the thread
 * pool: its four round trips (open, stat, read, close) cost the event loop several times the CPU of
 * reading a small file from the page cache, where a build just written is.
 */
function readSmallFile(path: string, bytes: Buffer): void {
  const file = openSync(path, 'r')
  try {
    const { size } = fstatSync(file)
    if (size !== bytes.byteLength) throw sizeChanged(path, size, bytes.byteLength)
    for (let filled = 0; filled < size; ) {
      const bytesRead = readSync(file, bytes, filled, size - filled, filled)
      if (bytesRead === 0) throw endedEarly(path, size - filled)
      filled += bytesRead
    }
  } finally {
    closeSync(file)
  }
}

/**
 * The whole of a file of `size` bytes, in a buffer from {@link takeBuffer} (or, not `pooled`, one
 * of its own: for a holder that may keep it). A file whose size is no longer `size` is an error.
 * Files up to the largest kept buffer (most of a build) are read without the thread pool; a larger
 * one, whose read would hold the event loop for long, through it.
 */
export async function readWhole(path: string, size: number, pooled: boolean): Promise<Buffer> {
  const bytes = pooled ? takeBuffer(size) : Buffer.allocUnsafeSlow(size)
  try {
    if (size <= LARGEST_KEPT) readSmallFile(path, bytes)
    else {
      const file = await openSized(path, size)
      try {
        await readInto(file, path, bytes, 0)
      } finally {
        await file.close()
      }
    }
    return bytes
  } catch (error) {
    if (pooled) giveBack(bytes)
    throw error
  }
}
