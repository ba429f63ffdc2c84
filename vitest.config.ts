import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    testTimeout: 60_000,
    // The integration tests mostly wait on servers and held requests: two files at once halve the run on 2 cores.
    maxWorkers: 2,
    hookTimeout: 120_000,
    // Vite 8 announces its coming native config loader whenever a config imports TypeScript
    // without extensions, as the fixture's does; it says nothing about our code.
    env: { VITE_CONFIG_NATIVE_IGNORE_WARNING: 'true' },
    projects: [
      // In-process and server-free: runs in seconds on a machine with no redis-server, no S3 server and no dist/.
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], globalSetup: ['test/setup/temp-root.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Each starts a real server on a free loopback port and provides its address to the tests.
          globalSetup: ['test/setup/temp-root.ts', 'test/setup/s3-server.ts', 'test/setup/valkey-server.ts', 'test/setup/vwatch-server.ts'],
        },
      },
    ],
  },
})
