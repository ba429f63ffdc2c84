import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll } from 'vitest'
import { closedPort } from './cli'

/** moto importable by python3: the tests that need IAM enforced are skipped without it (s3rver has no IAM). */
export const hasMoto = spawnSync('python3', ['-c', 'import moto.server'], { stdio: 'ignore' }).status === 0

interface AccessKey {
  accessKeyId: string
  secretAccessKey: string
}

/** A moto_server of a test file's own, whose IAM users are made before `enforce()` turns on authentication. */
export interface AuthMoto {
  endpoint: string
  /** An IAM user with this inline policy, and an access key of it. Before `enforce()` only. */
  createUser(name: string, policy: object): Promise<AccessKey>
  /** Before `enforce()` only. */
  createBucket(name: string): Promise<void>
  /** From now on every request must be signed by a user's key and allowed by its policy. */
  enforce(): Promise<void>
  /** A client with every permission, for planting and inspecting behind the tested user's back. */
  admin: S3Client
  stop(): Promise<void>
}

const STARTUP_ATTEMPTS = 300

/**
 * moto_server, except that a request's URL keeps its query as sent. moto checks signatures over
 * werkzeug's `Request.url`, whose query is decoded (`prefix=data%2Fapp%2F` becomes `data/app/`),
 * so every ListObjectsV2 with a prefix fails with SignatureDoesNotMatch once IAM is enforced
 * (getmoto/moto#5948). moto reads its parameters with `parse_qs`, which decodes them either way.
 */
const MOTO_WITH_RAW_QUERY = `
import sys
from werkzeug.sansio.request import Request
from werkzeug.sansio.utils import get_current_url
Request.url = property(lambda self: get_current_url(self.scheme, self.host, self.root_path, self.path) + ('?' + self.query_string.decode('latin-1') if self.query_string else ''))
from moto.server import main
sys.exit(main())
`

/**
 * moto accepts any key unless told otherwise, and the shared server must keep doing so for the
 * other test files. This one starts with authentication off (moto's default), is given its users
 * through moto's IAM API, and then enforces (`/moto-api/reset-auth`, moto's INITIAL_NO_AUTH_ACTION_COUNT).
 */
export async function startAuthMoto(): Promise<AuthMoto> {
  const endpoint = `http://127.0.0.1:${await closedPort()}`
  const server: ChildProcess = spawn('python3', ['-c', MOTO_WITH_RAW_QUERY, '-H', '127.0.0.1', '-p', endpoint.split(':')[2]!], { stdio: 'ignore' })
  const exited = new Promise((resolve) => server.once('exit', resolve))
  const answers = () =>
    fetch(endpoint).then(
      () => true,
      () => false,
    )
  for (let attempt = 0; !(await answers()); attempt++) {
    if (attempt > STARTUP_ATTEMPTS) throw new Error(`moto_server did not answer on ${endpoint}`)
    await sleep(100)
  }
  // While authentication is off moto checks no signature, but routes a request by the service its
  // credential scope names.
  const iam = async (params: Record<string, string>): Promise<string> => {
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: 'AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
      },
      body: new URLSearchParams({ ...params, Version: '2010-05-08' }),
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`moto IAM ${params.Action}: ${response.status} ${text}`)
    return text
  }
  const createUser = async (name: string, policy: object): Promise<AccessKey> => {
    await iam({ Action: 'CreateUser', UserName: name })
    await iam({ Action: 'PutUserPolicy', UserName: name, PolicyName: `${name}-policy`, PolicyDocument: JSON.stringify(policy) })
    const created = await iam({ Action: 'CreateAccessKey', UserName: name })
    const field = (tag: string) => new RegExp(`<${tag}>([^<]+)</${tag}>`).exec(created)![1]!
    return { accessKeyId: field('AccessKeyId'), secretAccessKey: field('SecretAccessKey') }
  }
  const adminKey = await createUser('admin', { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] })
  const admin = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: adminKey })
  return {
    endpoint,
    createUser,
    createBucket: async (name) => void (await admin.send(new CreateBucketCommand({ Bucket: name }))),
    enforce: async () => void (await fetch(`${endpoint}/moto-api/reset-auth`, { method: 'POST', body: '0' })),
    admin,
    async stop() {
      admin.destroy()
      server.kill()
      await exited
    },
  }
}

/** For the calling suite: an IAM-enforcing moto with one bucket, `guarded`, that nobody may touch yet. */
export function guardedMoto(): { readonly moto: AuthMoto } {
  const current = {} as { moto: AuthMoto }
  beforeAll(async () => {
    current.moto = await startAuthMoto()
    await current.moto.createBucket('guarded')
    await current.moto.enforce()
  })
  afterAll(() => current.moto?.stop())
  return current
}
