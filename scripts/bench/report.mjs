// Medians over runs, ratios to push-cache, and the table `npm run bench` prints.

/** The tool every other row is compared with. */
export const SUBJECT = 'push-cache'

function median(values) {
  const known = values.filter((value) => typeof value === 'number').sort((a, b) => a - b)
  if (known.length === 0) return null
  const middle = Math.floor(known.length / 2)
  return known.length % 2 === 1 ? known[middle] : (known[middle - 1] + known[middle]) / 2
}

/** Per-operation medians of the request counts of several runs. */
function medianCounts(runs) {
  const operations = new Set(runs.flatMap((run) => Object.keys(run.requests ?? {})))
  const counts = {}
  for (const operation of [...operations].sort()) counts[operation] = median(runs.map((run) => run.requests?.[operation] ?? 0))
  return counts
}

/** One row per (case, tool): medians of its runs, and for every tool but push-cache, push-cache's wall time ÷ its own. */
export function summarize(results) {
  const rows = results.map(({ runs, ...row }) => {
    const requests = medianCounts(runs)
    return {
      ...row,
      wallS: median(runs.map((run) => run.wallS)),
      cpuS: median(runs.map((run) => run.cpuS)),
      rssMb: median(runs.map((run) => run.rssMb)),
      requests,
      requestsTotal: Object.values(requests).reduce((sum, count) => sum + count, 0),
      report: runs.at(-1)?.report,
      runs,
    }
  })
  // One case after another, tools in the order they ran.
  const cases = [...new Set(rows.map((row) => row.case))]
  rows.sort((a, b) => cases.indexOf(a.case) - cases.indexOf(b.case))
  for (const row of rows) {
    const subject = rows.find((other) => other.case === row.case && other.tool === SUBJECT)
    row.ratio = row.tool === SUBJECT || !subject ? null : subject.wallS / row.wallS
  }
  return rows
}

const SHORT_OPERATIONS = {
  PutObject: 'put',
  UploadPart: 'part',
  CreateMultipartUpload: 'mpu-start',
  CompleteMultipartUpload: 'mpu-done',
  AbortMultipartUpload: 'mpu-abort',
  ListObjectsV2: 'list',
  ListObjects: 'list-v1',
  GetObject: 'get',
  HeadObject: 'head',
  HeadBucket: 'head-bucket',
  DeleteObjects: 'delete-batch',
  DeleteObject: 'delete',
}

const integer = (value) => Math.round(value).toLocaleString('en-US')
const fixed = (value, digits = 2) => (value === null || value === undefined ? '-' : value.toFixed(digits))

export function formatBytes(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`
  return `${bytes} B`
}

/** `a 3 · b 5`, largest first, with S3 operations in short form. */
function formatCounts(counts) {
  return Object.entries(counts)
    .filter(([, count]) => count > 0)
    .sort(([, a], [, b]) => b - a)
    .map(([operation, count]) => `${SHORT_OPERATIONS[operation] ?? operation} ${integer(count)}`)
    .join(' · ')
}

/** Fields of push-cache's `--json` report that say who and where, not how much: left out of the table. */
const IDENTITY_FIELDS = new Set(['ok', 'command', 'errors', 'app', 'store', 'dest', 'manifestKey', 'entrypoints', 'timestamp', 'dryRun'])

/** Whatever push-cache's report holds (fields may grow: skipped, phases…), flattened to `name value` pairs. */
function formatReport(report) {
  const parts = []
  const add = (name, value) => {
    if (value === undefined || value === null) return
    if (Array.isArray(value)) parts.push(`${name} [${value.length}]`)
    else if (typeof value === 'object') for (const [key, inner] of Object.entries(value)) add(`${name}.${key}`, inner)
    else if (typeof value === 'number' && /bytes/i.test(name)) parts.push(`${name} ${formatBytes(value)}`)
    else parts.push(`${name} ${value}`)
  }
  for (const [name, value] of Object.entries(report ?? {})) if (!IDENTITY_FIELDS.has(name)) add(name, value)
  return parts.join(' · ')
}

function table(rows) {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
  // Numbers right-aligned; the first and the last column (names, request details) left.
  return rows.map((row) =>
    row
      .map((cell, column) => (column === 0 || column === row.length - 1 ? cell.padEnd(widths[column]) : cell.padStart(widths[column])))
      .join('  ')
      .trimEnd(),
  )
}

/** The lines of the results table: one block per case, one row per tool, push-cache's report under it. */
export function formatTable(rows) {
  const lines = []
  for (const caseId of [...new Set(rows.map((row) => row.case))]) {
    const block = rows.filter((row) => row.case === caseId)
    lines.push('', block[0].title)
    const cells = [['  tool', 'wall s', 'pc/peer', 'CPU s', 'peak RSS', 'requests']]
    for (const row of block)
      cells.push([
        `  ${row.tool}`,
        fixed(row.wallS),
        row.ratio === null ? '' : fixed(row.ratio),
        fixed(row.cpuS),
        row.rssMb === null ? '-' : `${integer(row.rssMb)} MiB`,
        `${integer(row.requestsTotal)}  ${formatCounts(row.requests)}`,
      ])
    lines.push(...table(cells))
    const subject = block.find((row) => row.tool === SUBJECT)
    if (subject?.report) lines.push(`  push-cache --json: ${formatReport(subject.report)}`)
  }
  return lines
}

/**
 * The 1 GiB case is about memory: push-cache's peak RSS there over its peak in the cold push of
 * the 2,000-file build (the goal: at most 1.2, as file contents in memory are bounded), when both ran.
 */
export function bigMemoryLine(rows) {
  const of = (caseId) => rows.find((row) => row.case === caseId && row.tool === SUBJECT)?.rssMb
  const big = of('big')
  const cold = of('pushCold')
  if (!big || !cold) return []
  return ['', `push-cache peak RSS, 1 GiB push ÷ cold push of build A: ${integer(big)} ÷ ${integer(cold)} MiB = ${fixed(big / cold)} (goal: at most 1.20)`]
}
