import { createHash, createHmac } from 'node:crypto'

/** An AWS access key, as the SDK's credential chain resolves it. */
export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
  /** When temporary credentials stop working. */
  expiration?: Date
}

/** RFC 3986 percent-encoding, which SigV4 signs: everything but `A-Z a-z 0-9 - _ . ~` is escaped. */
export function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`)
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Headers the SDK leaves out of the signature, because proxies on the way may change them. */
const UNSIGNED_HEADERS = new Set(['cache-control', 'connection', 'expect', 'user-agent'])

const hmac = (key: string | Buffer, text: string) => createHmac('sha256', key).update(text).digest()

/** What a request is signed over. Header names are lower case; `path` is already URI-encoded. */
export interface SignableRequest {
  method: string
  path: string
  query: Readonly<Record<string, string>>
  headers: Record<string, string>
}

/**
 * AWS Signature Version 4 for S3, as the SDK signs it (`uriEscapePath: false`: S3 paths are encoded
 * once). The derived key changes once a day and per secret, so it is kept: signing a request is then
 * two hashes and one HMAC.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 */
export class SigV4Signer {
  private derived?: { secret: string; day: string; key: Buffer }

  constructor(private readonly region: string) {}

  /** Adds `x-amz-date`, `x-amz-content-sha256`, the session token and `authorization` to `request.headers`. */
  sign(request: SignableRequest, credentials: AwsCredentials, payloadHash: string, now = new Date()): void {
    const stamp = now.toISOString().replace(/[-:]|\.\d{3}/g, '')
    const day = stamp.slice(0, 8)
    const { headers } = request
    headers['x-amz-date'] = stamp
    headers['x-amz-content-sha256'] = payloadHash
    if (credentials.sessionToken) headers['x-amz-security-token'] = credentials.sessionToken
    const names = Object.keys(headers)
      .filter((name) => !UNSIGNED_HEADERS.has(name))
      .sort()
    const query = Object.entries(request.query)
      .map(([name, value]) => [uriEncode(name), uriEncode(value)] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => `${name}=${value}`)
      .join('&')
    const canonical = [
      request.method,
      request.path,
      query,
      names.map((name) => `${name}:${headers[name]!.trim().replace(/ +/g, ' ')}\n`).join(''),
      names.join(';'),
      payloadHash,
    ].join('\n')
    const scope = `${day}/${this.region}/s3/aws4_request`
    const signature = createHmac('sha256', this.keyFor(credentials.secretAccessKey, day))
      .update(`AWS4-HMAC-SHA256\n${stamp}\n${scope}\n${sha256Hex(canonical)}`)
      .digest('hex')
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`
  }

  private keyFor(secret: string, day: string): Buffer {
    if (this.derived?.secret !== secret || this.derived.day !== day)
      this.derived = { secret, day, key: hmac(hmac(hmac(hmac(`AWS4${secret}`, day), this.region), 's3'), 'aws4_request') }
    return this.derived.key
  }
}
