/**
 * Samepage's public API, and nothing else. Internals (src/lib, src/mm, src/ksm, and
 * the modules behind these exports) may change without notice.
 *
 * - The simulated host kernel with KSM: `Kernel` and its processes (DESIGN.md).
 * - The mini VM manager: `Host` with its `Guest`s, guest images, KSM policies.
 * - Scenarios: load, validate and run them; the reports `samepage run` prints.
 * - Snapshots: `host.save()` / `Host.restore()`, and `ScenarioRun` save/resume.
 */
export { Kernel } from './ksm/kernel.js';
export type { KsmKernelOptions as KernelOptions } from './ksm/kernel.js';
export type { KernelVersion } from './ksm/profile.js';
export { KSM_API_VERSION, KSM_CONTROL_FLAGS_RUN } from './ksm/devksm.js';
export type { DevKsm, SharedMemoryArea, KsmMemoryRegion, KsmKthreadInfo, DevKsmIoctl, SmaIoctl } from './ksm/devksm.js';
export type { KsmStats, KsmProcessStats } from './ksm/stats.js';
export type { KsmWorkCounts } from './ksm/work.js';
export { DEFAULT_KSMD_COSTS, ksmdCpuNs, fitKsmdCosts } from './ksm/cost.js';
export type { KsmdCosts, KsmdObservation, KsmdFit } from './ksm/cost.js';
export type { VmStat } from './mm/kernel.js';
export type { Process, Pin, Prot, Advice, MmapOptions, MapSpecial } from './mm/process.js';
export type { PrctlOption } from './mm/ksm-ops.js';
export type { MemSizeStats } from './mm/task-mmu.js';
export { KernelError, InvariantError, ERRNO } from './lib/errors.js';
export type { ErrnoCode } from './lib/errors.js';
export { PAGE_SIZE } from './mm/constants.js';

export { Host, DEFAULT_KSM_POLICY, describePolicy } from './vmm/host.js';
export type { HostOptions, CreateGuestOptions, KsmPolicy, KsmKnobSettings, HostEvent, HostSnapshot } from './vmm/host.js';
export { Guest } from './vmm/guest.js';
export type { GuestOptions, MemSlot } from './vmm/guest.js';
export type { GuestSample, GuestState, HostSample, HostEventKind } from './vmm/types.js';
export type { WorkloadSpec, PeriodicBurst } from './vmm/workload.js';
export { ImageCatalog, SyntheticSource, parseImage } from './vmm/image.js';
export type { GuestImage, GuestLayout } from './vmm/image.js';
export type { PageFill, PageSource, PageSourceCatalog, PageSourceRef, SourceLayout } from './vmm/page-source.js';
export { Ksmtuned, KSMTUNED_DEFAULTS } from './vmm/ksmtuned.js';
export type { KsmtunedConfig, KsmtunedDecision } from './vmm/ksmtuned.js';
export { parseKsmtunedConf } from './vmm/ksmtuned-conf.js';
export type { KsmtunedConf } from './vmm/ksmtuned-conf.js';
export { Mom, MOM_DEFAULTS } from './vmm/mom.js';
export type { MomConfig } from './vmm/mom.js';
export { Kubevirt, KUBEVIRT_DEFAULTS } from './vmm/kubevirt.js';
export type { KubevirtConfig } from './vmm/kubevirt.js';
export type { KsmGovernor, GovernorPort, GovernorNote } from './vmm/governor.js';
export { ConfigError, parseSize, parseDuration } from './vmm/config.js';
export type { ConfigProblem } from './vmm/config.js';

export { loadImageCatalog, defaultGuestsDir } from './scenario/images.js';
export { parseScenario } from './scenario/schema.js';
export type { Scenario, ScenarioGuest, ScenarioEvent, ScenarioAction, ScenarioVariant, ParseScenarioOptions } from './scenario/schema.js';
export { importLibvirtDomain } from './scenario/import-libvirt.js';
export { importQemuCommandLine, qemuArgsFromArgv, qemuArgsFromFile } from './scenario/import-qemu.js';
export { formatImport } from './scenario/import.js';
export type { ImportedGuest } from './scenario/import.js';
export { loadScenario } from './scenario/load.js';
export { runScenario, buildHost, ScenarioRun } from './scenario/run.js';
export type { RunOptions, RunPosition } from './scenario/run.js';
export { SnapshotError, SNAPSHOT_VERSION } from './vmm/snapshot.js';
export type { SnapshotProblem } from './vmm/snapshot.js';
export type { RunResult, RunEvent, GuestSummary, HostSummary } from './scenario/types.js';
export { formatSummary } from './report/table.js';
export { renderChart } from './report/svg.js';
export { toJson } from './report/json.js';
export { toCsv } from './report/csv.js';
