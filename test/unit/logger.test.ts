import { expect, it } from 'vitest'
import { createJsonLogger, createLogger } from '../../src/core/util/logger'

const capture = () => {
  const lines: string[] = []
  return { lines, write: (line: string) => void lines.push(line) }
}

it('writes text lines with the tag and the level, secrets redacted', () => {
  const { lines, write } = capture()
  const logger = createLogger('vite', false, write)
  logger.info('pushed to redis://:hunter2@cache:6379')
  logger.warn('slow')
  logger.debug('not asked for')
  expect(lines).toEqual(['[push-cache:vite] pushed to redis://:***@cache:6379', '[push-cache:vite] warning: slow'])
})

it('writes one JSON object a line for log pipelines, secrets redacted', () => {
  const { lines, write } = capture()
  const logger = createJsonLogger(true, write)
  logger.error('could not reach https://user:hunter2@vwatch:8008')
  logger.debug('plan')
  const parsed = lines.map((line) => JSON.parse(line) as Record<string, string>)
  expect(parsed.map(({ level, message }) => ({ level, message }))).toEqual([
    { level: 'error', message: 'could not reach https://user:***@vwatch:8008' },
    { level: 'debug', message: 'plan' },
  ])
  expect(Number.isNaN(Date.parse(parsed[0]!.time!))).toBe(false)
})
