#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8'
import { main } from './cli/main'

// V8 sized its heap for speed: a push of 100,000 files held ~76 MB live at its peak but ~140 MB of
// heap (ratio of the 100,000-file push's peak RSS to the 2,000-file push's: 2.8-3.3×). Sized for
// memory, the old generation grows in smaller steps. Only the CLI: a bundler's process keeps its own.
setFlagsFromString('--optimize-for-size')

/** Resolves once everything written to `stream` so far has gone out. */
const drained = (stream: NodeJS.WriteStream) => new Promise<void>((done) => stream.write('', () => done()))

// Exit as soon as the work is done and the output flushed: a library's timer must not hold a
// finished command (redis-parser shrinks its buffer pool on a 50 ms interval for a second or more
// after large replies, as `pop` from Valkey reads them).
main(process.argv).then(async (code) => {
  await Promise.all([drained(process.stdout), drained(process.stderr)])
  process.exit(code)
})
