export interface ProgressEvent {
  file: string
  bytes: number
  /** Files and bytes done so far, of the totals. */
  done: { files: number; bytes: number }
  total: { files: number; bytes: number }
}

/** Counts finished transfers and tells `onProgress`; populate and pop share it. */
export function createProgressCounter(total: ProgressEvent['total'], onProgress?: (event: ProgressEvent) => void) {
  const done = { files: 0, bytes: 0 }
  return {
    done,
    add(file: string, bytes: number): void {
      done.files++
      done.bytes += bytes
      onProgress?.({ file, bytes, done: { ...done }, total })
    },
  }
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`
}
