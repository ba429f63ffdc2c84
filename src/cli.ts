#!/usr/bin/env node
import { main } from './cli/main'

/** Resolves once everything written to `stream` so far has gone out. */
const drained = (stream: NodeJS.WriteStream) => new Promise<void>((done) => stream.write('', () => done()))

// Exit as soon as the work is done and the output flushed: a library's timer must not hold a
// finished command (redis-parser shrinks its buffer pool on a 50 ms interval for a second or more
// after large replies, as `pop` from Valkey reads them).
main(process.argv).then(async (code) => {
  await Promise.all([drained(process.stdout), drained(process.stderr)])
  process.exit(code)
})
