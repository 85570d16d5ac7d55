/**
 * The three kinds of failure, as in the kernel.
 *
 *  - An expected outcome is a return value (a small union, or `null`).
 *  - A caller's mistake is a `KernelError` carrying Linux's errno name and number.
 *    Throwing one never leaves state half-changed: every path that can throw it
 *    checks before it mutates, or undoes what it did.
 *  - A broken internal invariant is `bug()` / `assert()`, throwing `InvariantError`.
 *    (No condition is odd-but-survivable yet: WARN_ON_ONCE has no counterpart here;
 *    add one, with a reporter that prints it, when something needs it.)
 */

/** Linux errno numbers (asm-generic/errno-base.h, errno.h) for the codes we raise. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  EOVERFLOW: 75,
} as const;

export type ErrnoCode = keyof typeof ERRNO;

export class KernelError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;

  constructor(code: ErrnoCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'KernelError';
    this.code = code;
    this.errno = ERRNO[code];
  }
}

export class InvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantError';
  }
}

/** BUG(): an internal invariant is broken. */
export function bug(message: string): never {
  throw new InvariantError(message);
}

/**
 * BUG_ON(!cond). A message function is only called on failure, so nothing is
 * formatted otherwise; but the function itself is a closure, allocated on every
 * call that V8 does not inline away. In a loop run per page (ksmd's scan, page
 * freeing) write `if (!cond) bug(`...`)` instead: the template is only evaluated
 * on failure, and nothing is allocated.
 */
export function assert(cond: boolean, message: string | (() => string)): asserts cond {
  if (!cond) throw new InvariantError(typeof message === 'string' ? message : message());
}

/** Exhaustiveness check at the end of every switch over a union. */
export function assertNever(value: never, what: string): never {
  throw new InvariantError(`unexpected ${what}: ${String(value)}`);
}
