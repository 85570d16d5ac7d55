/**
 * Samepage's public API: the simulated host kernel with KSM, and nothing else.
 * Internals (src/mm, src/ksm, src/lib) may change without notice.
 */
export { Kernel } from './ksm/kernel.js';
export type { KernelOptions, VmStat } from './mm/kernel.js';
export type { Process, Pin, Prot, Advice, MmapOptions, MapSpecial } from './mm/process.js';
export { KernelError, InvariantError, ERRNO } from './lib/errors.js';
export type { ErrnoCode } from './lib/errors.js';
export { PAGE_SIZE } from './mm/constants.js';
