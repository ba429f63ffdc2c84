import { defineConfig } from 'vitest/config'

const minutes = Number(process.env.SOAK_MINUTES ?? 3)

/** `npm run soak`: one test that runs random schedules for SOAK_MINUTES against the servers the integration tests start. */
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['scripts/soak/soak.test.ts'],
    globalSetup: ['test/setup/s3-server.ts', 'test/setup/valkey-server.ts'],
    // The last schedule may start just before the deadline and run its own bounded course.
    testTimeout: (minutes + 3) * 60_000,
    hookTimeout: 120_000,
  },
})
