/** Options of the S3 store (`store: 's3://bucket[/root]'`). Unset fields fall back to the AWS SDK's own env and config chain. */
export interface S3Options {
  /**
   * Endpoint of an S3-compatible server (MinIO, Ceph, R2, moto).
   * @default the AWS SDK's endpoint chain: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then the profile's `endpoint_url` in ~/.aws/config (AWS itself when none is set)
   */
  endpoint?: string
  /**
   * Region. A blank `AWS_REGION` (a CI variable left empty) counts as unset. A bucket in another region is followed there.
   * @default the AWS SDK's own chain (AWS_REGION, then the region of the profile in ~/.aws/config, AWS_PROFILE choosing it); 'us-east-1' for a custom `endpoint` when that finds none
   */
  region?: string
  /**
   * Path-style addressing (`host/bucket/key`), which most S3-compatible servers need.
   * @default true when an endpoint is configured (this option, the environment or the profile), false otherwise
   */
  forcePathStyle?: boolean
  /**
   * Static credentials. Prefer the SDK's default chain (env `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
   * profiles, IRSA): never put secrets in a config file that is committed.
   * @default the AWS SDK default credential chain
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  /**
   * How each part of a multipart upload proves its bytes to the server: `'when_supported'` sends
   * its CRC32 (`x-amz-checksum-crc32`, as the aws CLI does; a fifth of MD5's CPU), `'when_required'`
   * its Content-MD5, for an S3-compatible server that refuses flexible checksums. Every other upload
   * carries its Content-MD5 either way, and no CRC32 trailer is ever sent.
   * @default 'when_supported'
   */
  checksums?: 'when_supported' | 'when_required'
  /**
   * Files above this many bytes go up as a streamed multipart upload; smaller ones are read into
   * memory so a failed request can be retried.
   * @default 8 * 1024 * 1024
   */
  multipartThreshold?: number
  /**
   * Whether the server honours `If-None-Match`/`If-Match` on PutObject and DeleteObject (AWS since
   * 2024, MinIO, moto): the app's writer lock is then a real compare-and-swap. Set `false` for one
   * that ignores them (older MinIO, s3rver): the lock is written and read back, best effort.
   * @default true
   */
  conditionalWrites?: boolean
}
