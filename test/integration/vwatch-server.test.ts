import { describe, expect, it } from 'vitest'
import { getVersion, putVersion, uniqueName, versionOf, vwatchStats, waitForStats } from '../helpers/vwatch'

// The test server speaks vwatch's protocol as the reference writes it down; the announce and watch
// tests rely on exactly these answers.
const at = (seconds: number) => new Date(seconds * 1000).toUTCString()

describe('the vwatch test server', () => {
  it('stores a version from the ETag header and answers 204 with ETag, Last-Modified and X-Last-Sync', async () => {
    const name = uniqueName()
    const put = await putVersion(name, { etag: '"100"', lastModified: at(100), body: '{"app":"a"}' })
    expect(put.status).toBe(204)
    expect(put.headers.get('etag')).toBe('"100"')
    expect(put.headers.get('last-modified')).toBe(at(100))
    expect(put.headers.get('x-last-sync')).toBe('100000000')

    const get = await getVersion(name)
    expect(get.status).toBe(200)
    expect(versionOf(get)).toBe('100')
    expect(await get.text()).toBe('{"app":"a"}')
  })

  it('takes ?version= and ?modified= (µs) when the headers are missing, and keeps a `/` in the name', async () => {
    const name = `${uniqueName()}/nested/more`
    expect((await putVersion(name, { query: '?version=v1&modified=5000000' })).status).toBe(204)
    const get = await getVersion(name)
    expect(versionOf(get)).toBe('v1')
    expect(get.headers.get('x-last-sync')).toBe('5000000')
  })

  it('answers 409 to an older or equally old version and keeps the stored one; the same version again is a 204', async () => {
    const name = uniqueName()
    await putVersion(name, { etag: '"200"', lastModified: at(200) })
    const older = await putVersion(name, { etag: '"100"', lastModified: at(100) })
    expect(older.status).toBe(409)
    expect(older.headers.get('etag')).toBe('"200"')
    expect((await putVersion(name, { etag: '"other"', lastModified: at(200) })).status).toBe(409)
    expect((await putVersion(name, { etag: '"200"', lastModified: at(300) })).status).toBe(204)
    expect((await vwatchStats(name)).version).toBe('200')
  })

  it('refuses a body above 4 KiB with 413 and stores nothing', async () => {
    const name = uniqueName()
    expect((await putVersion(name, { etag: '"1"', body: 'x'.repeat(4097) })).status).toBe(413)
    expect((await getVersion(name)).status).toBe(404)
  })

  it('answers 404 at once for a name nobody announced, even to a long-poll', async () => {
    const name = uniqueName()
    const started = performance.now()
    expect((await getVersion(name, { version: '1', timeout: '30s' })).status).toBe(404)
    expect(performance.now() - started).toBeLessThan(1000)
    expect(await vwatchStats(name)).toMatchObject({ gets: 1, waiting: 0 })
  })

  it('answers at once when the client holds another version, blocks while it holds the stored one, and answers 200 on timeout', async () => {
    const name = uniqueName()
    await putVersion(name, { etag: '"100"', lastModified: at(100) })
    expect(versionOf(await getVersion(name, { version: '99', timeout: '30s' }))).toBe('100')

    const started = performance.now()
    const timedOut = await getVersion(name, { version: '100', timeout: '300ms' })
    expect(timedOut.status).toBe(200)
    expect(versionOf(timedOut)).toBe('100')
    expect(performance.now() - started).toBeGreaterThanOrEqual(290)
  })

  it('wakes a blocked long-poll with the new version as soon as it is stored', async () => {
    const name = uniqueName()
    await putVersion(name, { etag: '"100"', lastModified: at(100) })
    const polling = getVersion(name, { version: '100', timeout: '30s' })
    await waitForStats(name, (stats) => stats.waiting === 1)
    const stored = performance.now()
    await putVersion(name, { etag: '"200"', lastModified: at(200), body: 'new' })
    const woken = await polling
    expect(performance.now() - stored).toBeLessThan(500)
    expect(versionOf(woken)).toBe('200')
    expect(await woken.text()).toBe('new')
    expect(await vwatchStats(name)).toMatchObject({ puts: 2, gets: 1, waiting: 0 })
  })

  it('rejects a timeout above a minute or that is not a duration', async () => {
    const name = uniqueName()
    await putVersion(name, { etag: '"1"' })
    expect((await getVersion(name, { version: '1', timeout: '2m' })).status).toBe(400)
    expect((await getVersion(name, { version: '1', timeout: 'soon' })).status).toBe(400)
  })
})
