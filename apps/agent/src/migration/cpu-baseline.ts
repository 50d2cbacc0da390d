/**
 * CPU flags (as in /proc/cpuinfo) that each x86-64 micro-architecture level requires, cumulative.
 * A VM whose CPU model is a level can run on a host that has all of the level's flags.
 */
const LEVELS: Record<string, readonly string[]> = {
  'x86-64': ['cmov', 'cx8', 'fpu', 'fxsr', 'mmx', 'syscall', 'sse', 'sse2'],
  'x86-64-v2': ['cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4_1', 'sse4_2', 'ssse3'],
  'x86-64-v3': ['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave'],
  'x86-64-v4': ['avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl'],
};
const ORDER = ['x86-64', 'x86-64-v2', 'x86-64-v3', 'x86-64-v4'];

/** Flags that describe the host, not what a guest may use: never compared. */
const HOST_ONLY = new Set([
  'constant_tsc',
  'nonstop_tsc',
  'tsc_known_freq',
  'rep_good',
  'nopl',
  'aperfmperf',
  'cpuid',
  'extd_apicid',
  'cpb',
  'hw_pstate',
  'arat',
  'ibs',
  'skinit',
  'wdt',
  'tce',
  'perfctr_core',
  'perfctr_nb',
  'perfctr_llc',
  'bpext',
  'mwaitx',
  'cat_l3',
  'cdp_l3',
  'mba',
  'cqm',
  'rdt_a',
  'irperf',
  'overflow_recov',
  'succor',
  'smca',
  'ht',
  'pti',
  'ssbd',
  'ibrs',
  'ibpb',
  'stibp',
  'vmmcall',
  'flushbyasid',
  'decodeassists',
  'pausefilter',
  'pfthreshold',
  'v_vmsave_vmload',
  'vgif',
  'v_spec_ctrl',
  'lbrv',
  'svm_lock',
  'nrip_save',
  'tsc_scale',
  'vmcb_clean',
  'npt',
  'hypervisor',
  'tpr_shadow',
  'vnmi',
  'flexpriority',
  'ept',
  'vpid',
  'ept_ad',
  'dtherm',
  'ida',
  'pln',
  'pts',
  'hwp',
  'epb',
  'xtopology',
  'arch_perfmon',
  'pebs',
  'bts',
  'ds_cpl',
  'tm',
  'tm2',
  'est',
  'acpi',
  'dtes64',
  'xtpr',
  'pdcm',
  'md_clear',
  'flush_l1d',
  'arch_capabilities',
  'tsc_deadline_timer',
  'tsc_adjust',
  'user_shstk',
  'ibrs_enhanced',
  'ibt',
  'amd_ppin',
  'intel_ppin',
  'ssbd',
]);

export interface CpuCheck {
  result: 'pass' | 'warn' | 'fail';
  reason: string;
}

/**
 * Can a host with `targetFlags` run a VM with `cpuModel` that now runs on a host with
 * `sourceFlags`? A named level needs its flags; host-model (and host-passthrough) needs every
 * guest-visible flag of the source host.
 */
export function checkCpu(
  cpuModel: string,
  source: { model: string; flags: readonly string[] },
  target: { model: string; flags: readonly string[] },
): CpuCheck {
  const have = new Set(target.flags);
  const level = ORDER.indexOf(cpuModel);
  if (level >= 0) {
    const missing = ORDER.slice(0, level + 1)
      .flatMap((name) => LEVELS[name])
      .filter((flag) => !have.has(flag));
    return missing.length === 0
      ? { result: 'pass', reason: `the target CPU (${target.model}) offers ${cpuModel}` }
      : {
          result: 'fail',
          reason: `the target CPU (${target.model}) lacks ${listed(missing)} that ${cpuModel} needs; choose a node with a newer CPU or give the VM a lower CPU model`,
        };
  }
  if (cpuModel === 'host-model' || cpuModel === 'host-passthrough' || cpuModel === 'host') {
    if (source.flags.length === 0)
      return {
        result: 'warn',
        reason: `the source host's CPU flags are unknown; the target CPU is ${target.model}`,
      };
    const missing = source.flags.filter((flag) => !HOST_ONLY.has(flag) && !have.has(flag));
    if (missing.length === 0)
      return {
        result: 'pass',
        reason: `the target CPU (${target.model}) offers every flag of the source CPU (${source.model})`,
      };
    return {
      result: 'fail',
      reason: `the target CPU (${target.model}) lacks ${listed(missing)} of the source CPU (${source.model}); a ${cpuModel} guest may crash there — choose a node of the same CPU generation or give the VM a named CPU model such as x86-64-v2`,
    };
  }
  return {
    result: 'warn',
    reason: `CPU model ${cpuModel} is not checked against the target's flags (${target.model}); make sure it is available there`,
  };
}

function listed(flags: readonly string[]): string {
  const shown = flags.slice(0, 6).join(', ');
  return `the flag${flags.length === 1 ? '' : 's'} ${shown}${flags.length > 6 ? ` and ${flags.length - 6} more` : ''}`;
}
