import { PushCacheError } from './errors'

/**
 * Checks a path relative to an output root or a pop destination, as it comes from a store key.
 * Refuses what could escape the root or mean different files on different systems.
 */
export function assertSafeRelpath(relpath: string, key = relpath): string {
  const problem =
    relpath === ''
      ? 'is empty'
      : relpath.includes('\0')
        ? 'contains a NUL byte'
        : relpath.includes('\\')
          ? 'contains a backslash'
          : relpath.startsWith('/') || /^[A-Za-z]:(\/|$)/.test(relpath)
            ? 'is absolute'
            : relpath.split('/').some((segment) => segment === '..' || segment === '.' || segment === '')
              ? 'has an empty, `.` or `..` segment'
              : undefined
  if (problem)
    throw new PushCacheError(
      'UNSAFE_PATH',
      `Refusing key ${JSON.stringify(key)}: its path ${problem} and could write outside the destination. Delete the key from the store or fix the tool that wrote it.`,
    )
  return relpath
}
