import { invalidOption } from './errors'

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }

/** `90s`, `30m`, `48h`, `7d`, `2w` or a bare number of seconds, to seconds. */
export function parseDuration(text: string, option = 'duration'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$/i.exec(String(text))
  if (!match) throw invalidOption(option, `is ${JSON.stringify(text)}, not a duration`, 'Write a number with a unit: 90s, 30m, 48h, 7d or 2w.')
  return Math.round(Number(match[1]) * UNIT_SECONDS[(match[2] || 's').toLowerCase()]!)
}

/** 3725 → `1h 2m`; for people, not for parsing back. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
}
