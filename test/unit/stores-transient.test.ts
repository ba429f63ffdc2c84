import { describe, expect, it } from 'vitest'
import { isTransient } from '../../src/core/util/concurrency'
import { isTransientS3 } from '../../src/stores/s3-transient'

const networkError = (code: string) => Object.assign(new Error(`connect ${code}`), { code })
const s3Answer = (name: string, status: number) => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } })

describe('is another attempt worth it', () => {
  it('says yes to network trouble and to an error marked transient, for every store', () => {
    for (const classify of [isTransient, isTransientS3]) {
      expect(classify(networkError('ECONNRESET'))).toBe(true)
      expect(classify(Object.assign(new Error('x'), { transient: true }))).toBe(true)
      expect(classify(Object.assign(networkError('ECONNRESET'), { transient: false }))).toBe(false)
      expect(classify(new Error('bad input'))).toBe(false)
    }
  })

  it('leaves S3 answers to the S3 store: a 5xx, a 429 and SlowDown are transient there, a 403 is not', () => {
    expect(isTransientS3(s3Answer('InternalError', 500))).toBe(true)
    expect(isTransientS3(s3Answer('TooManyRequests', 429))).toBe(true)
    expect(isTransientS3(Object.assign(new Error('slow down'), { name: 'SlowDown' }))).toBe(true)
    expect(isTransientS3(s3Answer('AccessDenied', 403))).toBe(false)
    expect(isTransient(s3Answer('InternalError', 500))).toBe(false)
  })
})
