import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { BUILD, CLI, ONLY_THE_BUILD, parseReport, readText, runCli, tree, workspaceWithBuild, writeTree } from '../helpers/cli'
import { appKeys, rawClient, uniqueApp, valkeyEnv, valkeyUrl } from '../helpers/valkey'

const client = rawClient()

let work: string
let dist: string
let app: string
beforeEach(async () => {
  ;({ work, dist } = await workspaceWithBuild())
  app = uniqueApp()
})

describe('push-cache with the Valkey store', () => {
  it('populates data:<app>:<ts>:<path> keys, lists the builds and pops the newest version of each file', async () => {
    const store = ['--app', app, '--store', valkeyUrl()]
    expect((await runCli(['populate', dist, ...store, '--timestamp', '100'])).code).toBe(0)
    await writeTree(dist, { 'index.html': 'v2' })
    const second = await runCli(['populate', dist, ...store, '--timestamp', '200', '--json'])
    expect(second.code, second.stderr).toBe(0)
    expect(parseReport(second.stdout)).toMatchObject({ ok: true, uploaded: 1, unchanged: 3, manifestKey: `manifest:${app}:200` })
    expect(await appKeys(client, app)).toContain(`data:${app}:200:index.html`)
    expect(await appKeys(client, app)).not.toContain(`lock:${app}:200`)

    const listed = parseReport((await runCli(['ls', ...store, '--json'])).stdout)
    expect((listed.builds as { timestamp: number }[]).map((build) => build.timestamp)).toEqual([200, 100])

    const dest = join(work, 'www')
    const popped = await runCli(['pop', dest, ...store])
    expect(popped.code, popped.stderr).toBe(0)
    expect(await readText(join(dest, 'index.html'))).toBe('v2')
    expect(await tree(dest)).toEqual(Object.keys(BUILD).sort())
  })

  it('pop refuses a planted key that would escape dest, names it, and writes nothing outside dest', async () => {
    // A valpop-style app: data keys only, no manifest, so pop finds its builds by scanning them.
    const crafted = `data:${app}:100:../../evil.sh`
    await client.set(`data:${app}:100:index.html`, 'ok')
    await client.set(crafted, 'echo pwned')
    const dest = join(work, 'serve', 'www')
    const result = await runCli(['pop', dest, '--app', app, '--store', valkeyUrl()])
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain(`Refusing key "${crafted}"`)
    expect(await tree(work)).toEqual(ONLY_THE_BUILD)
  })

  it('pop exits as soon as its work is done, also after large values (no timer holds the process)', async () => {
    // Large replies make redis-parser shrink its buffer pool on a 50 ms interval for a second or two.
    await writeTree(dist, Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`js/big-${i}.js`, randomBytes(1024 * 1024).toString('base64')])))
    const store = ['--app', app, '--store', valkeyUrl()]
    expect((await runCli(['populate', dist, ...store])).code).toBe(0)

    const child = spawn(process.execPath, [CLI, 'pop', join(work, 'www'), ...store], { env: { PATH: process.env.PATH, CI: 'true' } })
    let lastOutput = performance.now()
    for (const stream of [child.stdout, child.stderr]) stream.on('data', () => (lastOutput = performance.now()))
    const [code] = (await once(child, 'exit')) as [number]
    expect(code).toBe(0)
    // Loose on purpose (a loaded machine is slow); waiting for the interval took 1-2 s.
    expect(performance.now() - lastOutput).toBeLessThan(800)
  })

  it('a wrong password is bad configuration, and the password is never printed', async () => {
    const { host, port } = valkeyEnv().standalone
    const result = await runCli(['populate', dist, '--app', app, '--store', `redis://deployer:s3cret@${host}:${port}`, '--json'])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/WRONGPASS|NOAUTH|invalid username-password/i)
    expect(result.stderr + result.stdout).not.toContain('s3cret')
    expect(await appKeys(client, app)).toEqual([])
  })
})
