import { invalidOption } from '../model/errors'

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** `250ms`, `90s`, `30m`, `48h`, `7d`, `2w` or a bare number of seconds, to milliseconds. */
export function parseDurationMs(text: string, option = 'duration'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|[smhdw]?)\s*$/i.exec(String(text))
  if (!match) throw invalidOption(option, `is ${JSON.stringify(text)}, not a duration`, 'Write a number with a unit: 500ms, 90s, 30m, 48h, 7d or 2w.')
  return Math.round(Number(match[1]) * UNIT_MS[(match[2] || 's').toLowerCase()]!)
}

/** The same, to whole seconds. */
export function parseDuration(text: string, option = 'duration'): number {
  return Math.round(parseDurationMs(text, option) / 1000)
}

/** 3725 → `1h 2m`; for people, not for parsing back. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
}
