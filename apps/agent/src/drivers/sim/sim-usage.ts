import { createHash } from 'node:crypto';
import type { VmDefinition, VmState } from '../hypervisor.driver';

/**
 * Plausible, smoothly moving usage for a simulated VM: each VM has its own base load and rhythm
 * (derived from its uuid), so that figures differ between VMs, drift over minutes and wobble over
 * seconds, without any stored state.
 */
export function simVmUsage(
  spec: VmDefinition,
  state: VmState,
  nowMs: number,
): { cpuUsage: number; memoryUsedBytes: number } {
  const [h1, h2, h3, h4] = fractions(spec.uuid);
  const t = nowMs / 1000;
  const wave = (periodSeconds: number, phase: number) =>
    Math.sin((2 * Math.PI * t) / periodSeconds + phase * 2 * Math.PI);
  const runningCpu = clamp(
    0.08 + 0.5 * h1 + 0.12 * wave(90 + 240 * h2, h3) + 0.05 * wave(7 + 5 * h4, h1),
    0.01,
    0.99,
  );
  const runningMemory = clamp(0.35 + 0.45 * h3 + 0.04 * wave(600 + 600 * h4, h2), 0.1, 0.97);
  const memory = (fraction: number) =>
    Math.round(spec.memoryBytes * (spec.hugepages ? 1 : fraction));
  switch (state) {
    case 'running':
    case 'migrating':
      return { cpuUsage: round(runningCpu), memoryUsedBytes: memory(runningMemory) };
    case 'starting':
      return {
        cpuUsage: round(clamp(0.85 + 0.1 * wave(3, h1), 0, 1)),
        memoryUsedBytes: memory(0.2),
      };
    case 'rebooting':
      return {
        cpuUsage: round(clamp(0.6 + 0.2 * wave(3, h2), 0, 1)),
        memoryUsedBytes: memory(0.25),
      };
    case 'stopping':
      return {
        cpuUsage: round(clamp(0.2 + 0.05 * wave(3, h3), 0, 1)),
        memoryUsedBytes: memory(runningMemory * 0.8),
      };
    case 'paused':
      return { cpuUsage: 0, memoryUsedBytes: memory(runningMemory) };
    case 'stopped':
    case 'crashed':
      return { cpuUsage: 0, memoryUsedBytes: 0 };
  }
}

function fractions(seed: string): number[] {
  const digest = createHash('sha256').update(seed).digest();
  return [0, 4, 8, 12].map((offset) => digest.readUInt32BE(offset) / 0x1_0000_0000);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
