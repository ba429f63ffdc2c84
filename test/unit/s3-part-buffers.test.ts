import { setImmediate as turn } from 'node:timers/promises'
import { expect, it } from 'vitest'
import { createPartBuffers } from '../../src/stores/s3-multipart'

/** Whether `promise` has settled once the event loop turned. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  promise.then(
    () => (done = true),
    () => (done = true),
  )
  await turn()
  return done
}

it('gives a buffer back to the upload that began first, not to the one that asked first', async () => {
  const buffers = createPartBuffers()
  const first = buffers.begin()
  const second = buffers.begin()
  const held: Buffer[] = []
  // The later upload takes until the store's buffers are all lent: its next take waits, asked first.
  let forSecond: Promise<Buffer> | undefined
  for (let taken = 0; taken < 64 && !forSecond; taken++) {
    const taking = buffers.take(second)
    if (await settled(taking)) held.push(await taking)
    else forSecond = taking
  }
  expect(forSecond, 'the buffers ran out').toBeDefined()
  const forFirst = buffers.take(first)
  buffers.giveBack(held.pop()!)
  expect(await settled(forFirst)).toBe(true)
  expect(await settled(forSecond!)).toBe(false)
  buffers.giveBack(held.pop()!)
  expect(await settled(forSecond!)).toBe(true)
})
