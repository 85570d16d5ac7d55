/**
 * libvirt's names for the KSM files: `virsh node-memory-tune --shm-pages-to-scan N`,
 * virNodeSetMemoryParameters() and virNodeGetMemoryParameters() (the
 * VIR_NODE_MEMORY_SHARED_* typed parameters). Source: github.com/libvirt/libvirt,
 * commit 010f88d5cb4eee45eaaf13c26164fd80dae1c942, src/util/virhostmem.c:
 *
 *  - the file is the parameter's name after its first '_' under /sys/kernel/mm/ksm/
 *    (virHostMemSetParameterValue: `strchr(param->field, '_') + 1`);
 *  - only shm_pages_to_scan, shm_sleep_millisecs and shm_merge_across_nodes can be set
 *    (virHostMemSetParameters validates exactly these three, as unsigned ints);
 *  - a parameter whose file the kernel lacks is refused before anything is written:
 *    "Parameter '%s' is not supported by this kernel" (virHostMemParametersAreAllSupported);
 *  - shm_pages_shared, shm_pages_sharing, shm_pages_unshared, shm_pages_volatile and
 *    shm_full_scans are read-only statistics (virHostMemGetParameters, unsigned long long).
 */

export interface NodeMemoryParam {
  /** The file under /sys/kernel/mm/ksm/. */
  readonly file: string;
  /** virNodeSetMemoryParameters accepts it. */
  readonly settable: boolean;
}

export const NODE_MEMORY_PARAMS: Readonly<Record<string, NodeMemoryParam>> = {
  shm_pages_to_scan: { file: 'pages_to_scan', settable: true },
  shm_sleep_millisecs: { file: 'sleep_millisecs', settable: true },
  shm_merge_across_nodes: { file: 'merge_across_nodes', settable: true },
  shm_pages_shared: { file: 'pages_shared', settable: false },
  shm_pages_sharing: { file: 'pages_sharing', settable: false },
  shm_pages_unshared: { file: 'pages_unshared', settable: false },
  shm_pages_volatile: { file: 'pages_volatile', settable: false },
  shm_full_scans: { file: 'full_scans', settable: false },
};

/**
 * The message for a libvirt name a scenario's knobs cannot take on a kernel (Linux
 * `version`, whose files kernelHasFile knows), or null for one it can.
 * shm_merge_across_nodes maps to merge_across_nodes where the kernel has it (6.x).
 */
export function nodeMemoryParamProblem(name: string, kernelHasFile: (file: string) => boolean, version: string): string | null {
  const p = NODE_MEMORY_PARAMS[name];
  if (p === undefined) return null;
  if (!p.settable) return `libvirt's name for the read-only statistic ${p.file}, not a knob`;
  if (!kernelHasFile(p.file)) {
    return `libvirt's name for /sys/kernel/mm/ksm/${p.file}, which this kernel (Linux ${version}) does not have; libvirt refuses it too: "Parameter '${name}' is not supported by this kernel"`;
  }
  return null;
}
