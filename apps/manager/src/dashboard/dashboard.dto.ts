import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { privilegesSchema } from '../resources/resources.dto';

const count = z.number().int().min(0);

export const nodeCountsSchema = z
  .object({
    total: count,
    alive: count.meta({ description: 'Nodes whose lease is alive, whatever their health' }),
    degraded: count.meta({ description: 'Alive nodes whose health is degraded or failed' }),
    offline: count,
  })
  .meta({ id: 'DashboardNodeCounts' });

export const vmCountsSchema = z
  .object({
    total: count,
    running: count,
    stopped: count,
    other: count.meta({ description: 'Starting, stopping, migrating, paused, crashed …' }),
  })
  .meta({ id: 'DashboardVmCounts', description: 'The VMs the caller may see (vm.audit)' });

export const alertSeveritySchema = z.enum(['critical', 'warning']);
export type AlertSeverity = z.infer<typeof alertSeveritySchema>;

const alertSince = z.iso
  .datetime()
  .nullable()
  .meta({ description: 'When the condition began (an outage), null where not known or not kept' });

export const usageSampleSchema = z
  .object({
    at: z.iso.datetime(),
    cpu: z.number().min(0).max(1).meta({ description: "Share of the alive nodes' cores in use" }),
    memory: z
      .number()
      .min(0)
      .max(1)
      .meta({ description: "Share of the alive nodes' memory in use" }),
  })
  .meta({ id: 'UsageSample' });

export const dashboardRemoteSchema = z
  .object({
    remote: z.string(),
    status: z.enum(['pending', 'online', 'unreachable']),
    since: z.iso.datetime().nullable().meta({ description: 'Unreachable since' }),
    lastRefreshAt: z.iso.datetime().nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    nodes: nodeCountsSchema,
    vms: vmCountsSchema,
    cpu: z
      .object({ cores: count, usage: z.number().min(0).max(1) })
      .meta({ description: 'Cores of the alive nodes and the share in use' }),
    memory: z
      .object({ totalBytes: z.number(), usedBytes: z.number() })
      .meta({ description: 'Memory of the alive nodes' }),
    history: z
      .array(usageSampleSchema)
      .meta({ description: 'One sample per successful refresh, the last 60, oldest first' }),
    alerts: z.array(
      z.object({ severity: alertSeveritySchema, message: z.string(), since: alertSince }),
    ),
    tasksRunning: count.meta({
      description: 'Queued and running tasks on this remote that the caller may see',
    }),
    privileges: privilegesSchema.meta({
      description: 'The privileges the caller holds on /remotes/{remote}',
    }),
  })
  .meta({ id: 'DashboardRemote' });
export type DashboardRemote = z.infer<typeof dashboardRemoteSchema>;

export const dashboardAlertSchema = z
  .object({
    remote: z.string(),
    severity: alertSeveritySchema,
    message: z.string(),
    since: alertSince,
  })
  .meta({ id: 'DashboardAlert' });
export type DashboardAlert = z.infer<typeof dashboardAlertSchema>;

export const dashboardTaskSchema = z
  .object({
    id: z.string(),
    type: z.string(),
    state: z.enum(['queued', 'running']),
    remote: z.string().nullable(),
    vm: z.string().nullable(),
    progress: z.number().min(0).max(1),
    startedAt: z.iso.datetime().nullable(),
    owner: z.string(),
  })
  .meta({ id: 'DashboardTask' });
export type DashboardTask = z.infer<typeof dashboardTaskSchema>;

export const dashboardTotalsSchema = z
  .object({
    remotes: z.object({ total: count, online: count, unreachable: count, pending: count }),
    nodes: nodeCountsSchema,
    vms: vmCountsSchema,
    cpu: z.object({
      cores: count,
      used: z
        .number()
        .min(0)
        .meta({ description: 'Cores in use: the sum over alive nodes of usage × cores' }),
    }),
    memory: z
      .object({ totalBytes: z.number(), usedBytes: z.number() })
      .meta({ description: 'Memory of the alive nodes' }),
    tasksRunning: count.meta({ description: 'Queued and running tasks the caller may see' }),
  })
  .meta({ id: 'DashboardTotals' });
export type DashboardTotals = z.infer<typeof dashboardTotalsSchema>;

export const dashboardSchema = z
  .object({
    generatedAt: z.iso.datetime(),
    totals: dashboardTotalsSchema,
    remotes: z
      .array(dashboardRemoteSchema)
      .meta({ description: 'Unreachable remotes first, then those with alerts, then by name' }),
    alerts: z
      .array(dashboardAlertSchema)
      .meta({ description: "Every remote's alerts, critical first" }),
    runningTasks: z.array(dashboardTaskSchema).meta({
      description: 'Up to 20 queued or running tasks the caller may see (task.audit), newest first',
    }),
  })
  .meta({ id: 'Dashboard' });
export type Dashboard = z.infer<typeof dashboardSchema>;
export class DashboardDto extends createZodDto(dashboardSchema) {}
