import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { BUILD, parseReport, readText, runCli, tree, workspaceWithBuild, writeTree } from '../helpers/cli'
import { appKeys, rawAuthCluster, rawTlsClient, uniqueApp, valkeyEnv } from '../helpers/valkey'

// Node reads NODE_EXTRA_CA_CERTS only when the process starts, so the store goes through the built
// CLI in a child process that trusts the setup's throwaway CA that way.
const tls = valkeyEnv().tls
const trusted = { NODE_EXTRA_CA_CERTS: tls.ca }
const tlsClient = await rawTlsClient()
const authCluster = valkeyEnv().authCluster
const cluster = rawAuthCluster()

let work: string
let dist: string
let app: string
beforeEach(async () => {
  ;({ work, dist } = await workspaceWithBuild())
  app = uniqueApp()
})

describe('a TLS-only server with a password', () => {
  it('valkeys:// populates and pops through TLS, and never prints the password', async () => {
    const populated = await runCli(
      ['populate', dist, '--app', app, '--store', `valkeys://:${tls.password}@${tls.host}:${tls.port}`, '--timestamp', '100', '--json'],
      {
        env: trusted,
      },
    )
    expect(populated.code, populated.stderr).toBe(0)
    expect(parseReport(populated.stdout)).toMatchObject({ ok: true, uploaded: 4, manifestKey: `manifest:${app}:100` })
    expect(await appKeys(tlsClient, app)).toEqual([...Object.keys(BUILD).map((relpath) => `data:${app}:100:${relpath}`), `manifest:${app}:100`].sort())
    for (const [relpath, content] of Object.entries(BUILD)) expect(await tlsClient.get(`data:${app}:100:${relpath}`)).toBe(content)

    // rediss:// is the same, and `localhost` is checked against the certificate's DNS name.
    const dest = join(work, 'www')
    const popped = await runCli(['pop', dest, '--app', app, '--store', `rediss://:${tls.password}@localhost:${tls.port}`], { env: trusted })
    expect(popped.code, popped.stderr).toBe(0)
    expect(await tree(dest)).toEqual(Object.keys(BUILD).sort())
    for (const [relpath, content] of Object.entries(BUILD)) expect(await readText(join(dest, relpath))).toBe(content)
    for (const output of [populated.stdout, populated.stderr, popped.stdout, popped.stderr]) expect(output).not.toContain(tls.password)
  })

  it('refuses a server certificate from a CA Node does not trust, with nothing written', async () => {
    const result = await runCli(['populate', dist, '--app', app, '--store', `valkeys://:${tls.password}@${tls.host}:${tls.port}`])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/self-signed certificate in certificate chain|SELF_SIGNED_CERT_IN_CHAIN/)
    expect(result.stderr).toContain('set NODE_EXTRA_CA_CERTS to the PEM file of its CA')
    expect(result.stderr + result.stdout).not.toContain(tls.password)
    expect(await appKeys(tlsClient, app)).toEqual([])
  })

  it('rediss:// with a wrong password is bad configuration, and the password is never printed', async () => {
    // The wrong password contains the right one: neither may show.
    const result = await runCli(['populate', dist, '--app', app, '--store', `rediss://:not-${tls.password}@${tls.host}:${tls.port}`], { env: trusted })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/WRONGPASS/)
    expect(result.stderr).toContain(`rediss://${tls.host}:${tls.port}`)
    expect(result.stderr + result.stdout).not.toContain(tls.password)
    expect(await appKeys(tlsClient, app)).toEqual([])
  })

  it('a plain redis:// to the TLS port fails as bad configuration, soon, instead of hanging', async () => {
    const started = Date.now()
    const result = await runCli(['populate', dist, '--app', app, '--store', `redis://:${tls.password}@${tls.host}:${tls.port}`], { env: trusted })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(new RegExp(`Cannot connect to redis://${tls.host}:${tls.port}: .*(ECONNRESET|Connection is closed)`))
    expect(result.stderr).toContain('If the server accepts TLS only, use valkeys:// or rediss://.')
    expect(result.stderr + result.stdout).not.toContain(tls.password)
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(await appKeys(tlsClient, app)).toEqual([])
  })
})

describe('a plain server', () => {
  it('rediss:// to it says TLS was expected and not spoken, within the connect deadline, not after every retry', async () => {
    const { host, port } = valkeyEnv().standalone
    const started = Date.now()
    const result = await runCli(['ls', '--app', app, '--store', `rediss://${host}:${port}`, '--connect-timeout', '2000'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain(`rediss://${host}:${port} expected TLS, and the server did not speak it`)
    expect(result.stderr).toContain(`use redis:// (redis://${host}:${port})`)
    expect(Date.now() - started).toBeLessThan(2000)
  })
})

describe('a password-protected 3-master cluster', () => {
  const nodes = authCluster.nodes.map(({ host, port }) => `${host}:${port}`).join(',')
  const assets = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`js/chunk-${i}.js`, `chunk ${i}`]))

  it('authenticates to every master: password in the URL to populate, from the environment to pop', async () => {
    await writeTree(dist, assets)
    const populated = await runCli(['populate', dist, '--app', app, '--store', `valkey+cluster://:${authCluster.password}@${nodes}`, '--timestamp', '100'])
    expect(populated.code, populated.stderr).toBe(0)
    await cluster.ping()
    const masters = cluster.nodes('master')
    expect(masters).toHaveLength(3)
    for (const master of masters) expect((await master.keys(`data:${app}:*`)).length).toBeGreaterThan(0)
    const files = { ...BUILD, ...assets }
    expect(await appKeys(cluster, app)).toEqual([...Object.keys(files).map((relpath) => `data:${app}:100:${relpath}`), `manifest:${app}:100`].sort())

    const dest = join(work, 'www')
    const popped = await runCli(['pop', dest, '--app', app, '--store', `valkey+cluster://${nodes}`], {
      env: { PUSH_CACHE_VALKEY_PASSWORD: authCluster.password },
    })
    expect(popped.code, popped.stderr).toBe(0)
    expect(await tree(dest)).toEqual(Object.keys(files).sort())
    for (const output of [populated.stdout, populated.stderr, popped.stdout, popped.stderr]) expect(output).not.toContain(authCluster.password)
  })

  it('a wrong password is bad configuration, never printed, with nothing written', async () => {
    const result = await runCli(['populate', dist, '--app', app, '--store', `valkey+cluster://:not-${authCluster.password}@${nodes}`])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/WRONGPASS|NOAUTH/)
    expect(result.stderr + result.stdout).not.toContain(authCluster.password)
    expect(await appKeys(cluster, app)).toEqual([])
  })

  it('no password at all is bad configuration too', async () => {
    const result = await runCli(['populate', dist, '--app', app, '--store', `valkey+cluster://${nodes}`])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/NOAUTH|Authentication required/i)
    expect(await appKeys(cluster, app)).toEqual([])
  })
})
