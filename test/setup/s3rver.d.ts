// s3rver ships no types; only what the S3 test setup uses.
declare module 's3rver' {
  import type { AddressInfo } from 'node:net'

  export default class S3rver {
    constructor(options: { address?: string; port?: number; silent?: boolean; directory?: string })
    run(): Promise<AddressInfo>
    close(): Promise<void>
  }
}
