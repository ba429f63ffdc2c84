import { describe, expect, it } from 'vitest'
import { createS3Store } from '../../src/stores/s3'

describe("the S3 store's share of a push's byte budget", () => {
  const store = createS3Store('s3://bucket', { endpoint: 'http://127.0.0.1:9', region: 'us-east-1', multipartThreshold: 8 * 1024 * 1024 })

  it('is a small file whole, and nothing of a large one (its parts come from the store’s own bounded pool)', async () => {
    try {
      expect(store.bufferedBytes?.(1000)).toBe(1000)
      expect(store.bufferedBytes?.(8 * 1024 * 1024)).toBe(8 * 1024 * 1024)
      // Two large files counted at a part each took the whole 16 MiB, and no small file went beside them.
      expect(store.bufferedBytes?.(100 * 1024 * 1024)).toBe(0)
    } finally {
      await store.close()
    }
  })
})
