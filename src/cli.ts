#!/usr/bin/env node
import { main } from './cli/main'

// exitCode rather than exit(): pending writes to stdout and stderr are flushed first.
main(process.argv).then((code) => {
  process.exitCode = code
})
