import { PushCacheError } from './errors'

/** C0 and C1 controls and DEL (Unicode category Cc): a newline in a name forges log lines, an escape rewrites the terminal. */
const CONTROL = /\p{Cc}/u

/**
 * Why `relpath` (relative to an output root or a pop destination) could escape the root or mean
 * different files on different systems; undefined when it is a plain relative path.
 */
export function unsafePathReason(relpath: string): string | undefined {
  if (relpath === '') return 'is empty'
  if (relpath.includes('\0')) return 'contains a NUL byte'
  if (CONTROL.test(relpath)) return 'contains a control character'
  if (relpath.includes('\\')) return 'contains a backslash'
  if (relpath.startsWith('/') || /^[A-Za-z]:(\/|$)/.test(relpath)) return 'is absolute'
  if (relpath.split('/').some((segment) => segment === '..' || segment === '.' || segment === '')) return 'has an empty, `.` or `..` segment'
  return undefined
}

/** Checks a path as it comes from a store key, before anything is written for it. */
export function assertSafeRelpath(relpath: string, key = relpath): string {
  const problem = unsafePathReason(relpath)
  if (problem)
    throw new PushCacheError(
      'UNSAFE_PATH',
      `Refusing key ${JSON.stringify(key)}: its path ${problem} and could write outside the destination. Delete the key from the store or fix the tool that wrote it.`,
    )
  return relpath
}
