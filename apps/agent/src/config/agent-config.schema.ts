import { clusterIdSchema, endpointSchema, labelSchema, nodeIdSchema } from '@debvisor/common';
import { z } from 'zod';
import { haConfigSchema } from '../ha/ha-config.schema';

const GiB = 1024 ** 3;
const filePath = z.string().min(1, 'a file path is required');

/** x86 CPU flag names as in /proc/cpuinfo. */
export const cpuFlagSchema = z
  .string()
  .regex(
    /^[a-z0-9_.]{1,40}$/,
    'a CPU flag is 1-40 lower-case letters, digits, dots and underscores',
  );

/** A Zen 3 (EPYC 7003) host: what the sim driver reports unless configured otherwise. */
const DEFAULT_CPU_FLAGS = (
  'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx ' +
  'mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf pni ' +
  'pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm ' +
  'cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext ' +
  'perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 hw_pstate ssbd mba ibrs ibpb stibp vmmcall ' +
  'fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec ' +
  'xgetbv1 xsaves clzero irperf xsaveerptr rdpru wbnoinvd arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean ' +
  'flushbyasid decodeassists pausefilter pfthreshold v_vmsave_vmload vgif v_spec_ctrl umip pku ospke vaes ' +
  'vpclmulqdq rdpid overflow_recov succor smca fsrm'
).split(' ');

const simSchema = z.strictObject({
  /** 1 = realistic durations (a start takes seconds); tests use ~0.02. */
  timeScale: z.number().positive().max(1000).default(1),
  /** VMs created on the first start, when the state directory holds none. */
  seedVms: z.int().min(0).max(1000).default(0),
  cpu: z
    .strictObject({
      model: z.string().min(1).max(200).default('AMD EPYC 7543 32-Core Processor'),
      count: z.int().min(1).max(4096).default(64),
      flags: z.array(cpuFlagSchema).max(1024).default(DEFAULT_CPU_FLAGS),
    })
    .prefault({}),
  memoryBytes: z
    .int()
    .positive()
    .default(512 * GiB),
  bridges: z.array(labelSchema).max(256).default(['vmbr0', 'vmbr1']),
  /** Bytes per second a simulated migration moves when no bandwidth limit is set (10 GbE). */
  migrationBandwidthBytes: z.int().positive().default(1_250_000_000),
  /** The simulated rbd-mirror (storage.driver sim): one agent per cluster replays the paired pools. */
  mirror: z
    .strictObject({
      /** How often it replays (copies mirror snapshots, reports states, takes scheduled snapshots). */
      replayIntervalMs: z.int().min(50).max(600_000).default(5_000),
      /** Deadline of each call to a peer cluster; a peer slower than this counts as down. */
      peerTimeoutMs: z.int().min(50).max(60_000).default(3_000),
    })
    .prefault({}),
  /** Every running sim VM writes to its disks this often (a new content version); 0: never. */
  diskWriteIntervalMs: z.int().min(0).max(3_600_000).default(60_000),
  hugepages: z
    .strictObject({
      pageSizeBytes: z
        .int()
        .positive()
        .default(2 * 1024 * 1024),
      total: z.int().min(0).default(65536),
      free: z.int().min(0).default(65536),
    })
    .prefault({})
    .refine((h) => h.free <= h.total, { message: 'free cannot exceed total', path: ['free'] }),
});

const qemuSchema = z.strictObject({
  /** The QEMU system emulator (a name looked up in PATH, or an absolute path). */
  binary: z.string().min(1).max(4096).default('qemu-system-x86_64'),
  /** 'kvm' in production; 'tcg' (software emulation) where /dev/kvm is missing, as in tests. */
  accel: z.enum(['kvm', 'tcg']).default('kvm'),
  /** QEMU machine type; both ends of a migration must use the same. */
  machine: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{0,63}$/, 'a machine type such as q35 or pc-q35-7.2')
    .default('q35'),
  /** Disk images as files <imageDir>/<pool>/<image>.raw on storage every node mounts; unset: RBD (rbd:<pool>/<image>). */
  imageDir: filePath.optional(),
  /**
   * A directory of guest kernels and initramfs images: a VM labelled qemu-kernel / qemu-initrd
   * (file names inside it) and qemu-append boots them directly. Unset: direct boot is refused.
   */
  bootDir: filePath.optional(),
  /** Seconds QEMU gets to start and answer on its QMP socket. */
  startTimeoutSeconds: z.number().positive().max(600).default(30),
});

const libvirtSchema = z.strictObject({
  /** The libvirt connection URI. */
  uri: z.string().min(1).max(1024).default('qemu:///system'),
  /** The virsh client (a name looked up in PATH, or an absolute path). */
  virsh: z.string().min(1).max(4096).default('virsh'),
  /** Emulator type in the domain XML: 'kvm', or 'qemu' (TCG) where /dev/kvm is missing. */
  domainType: z.enum(['kvm', 'qemu']).default('kvm'),
  /** How the target libvirtd is reached in peer-to-peer migration: qemu+tls://<host>/system by default. */
  migrationUriTemplate: z.string().min(1).max(1024).default('qemu+tls://{host}/system'),
  /** Seconds a virsh call may take before it is killed. */
  commandTimeoutSeconds: z.number().positive().max(3600).default(60),
});

const migrationSchema = z.strictObject({
  /** Seconds a one-time migration cookie stays valid (at most 60). */
  cookieTtlSeconds: z.int().min(1).max(60).default(60),
  /** How often the source samples the migration's progress. */
  progressIntervalMs: z.int().min(50).max(10_000).default(500),
  /**
   * Across clusters, the most a disk's mirror at the target may lag behind the source's newest
   * mirror snapshot (seconds) for pre-flight to pass.
   */
  maxMirrorLagSeconds: z.int().min(0).max(86_400).default(300),
  /** Across clusters, how long the target waits at the switchover for the source's demotion snapshot before promoting the disks. */
  mirrorHandoverTimeoutSeconds: z.int().min(1).max(3_600).default(30),
  /**
   * QEMU multifd channels a target offers besides the main one (pre-copy only: QEMU 7.2 refuses
   * multifd with post-copy), each its own TLS connection, so that both ends use several cores; 0: off.
   */
  multifdChannels: z.int().min(0).max(15).default(2),
  /**
   * How long the agents try to resume a post-copy migration whose link broke (seconds from the
   * break): the source reconnects with its one-time resume credential, the target accepts it that
   * long. Past it both ends stay paused and the migration needs an operator (docs/migration.md).
   */
  postcopyRecoveryWindowSeconds: z.int().min(1).max(86_400).default(300),
});

const rbdSchema = z.strictObject({
  /** The Ceph cluster name (--cluster): default conf /etc/ceph/<cluster>.conf, keyring /etc/ceph/<cluster>.client.<clientId>.keyring. */
  cluster: z
    .string()
    .regex(
      /^[A-Za-z][A-Za-z0-9_]{0,31}$/,
      'a Ceph cluster name is 1-32 letters, digits and underscores, starting with a letter',
    )
    .default('ceph'),
  /** ceph.conf of the cluster; unset: Ceph's default for the cluster name. */
  conf: filePath.optional(),
  /** The client's keyring; unset: Ceph's default search (keyring setting of the conf, /etc/ceph/<cluster>.client.<id>.keyring). */
  keyring: filePath.optional(),
  /** The cephx user the agent runs as (client.<clientId>): caps `mon 'profile rbd' osd 'profile rbd' mgr 'profile rbd'`. */
  clientId: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
      'a cephx client id is 1-64 letters, digits, dots, underscores and hyphens',
    )
    .default('admin'),
  /** The rbd, ceph and rados command-line tools (Debian ceph-common; names looked up in PATH, or absolute paths). */
  rbdBinary: z.string().min(1).max(4096).default('rbd'),
  cephBinary: z.string().min(1).max(4096).default('ceph'),
  /** rados: takes and breaks the VM locks on image headers. */
  radosBinary: z.string().min(1).max(4096).default('rados'),
  /** Seconds an rbd/ceph call may take on this cluster before it is killed. */
  commandTimeoutSeconds: z.number().positive().max(3600).default(30),
  /** Seconds a call that reaches a peer cluster (mirroring, bootstrap import, peer status) may take. */
  peerTimeoutSeconds: z.number().positive().max(3600).default(10),
});

const httpUrl = z
  .url({ error: 'an etcd endpoint is a URL such as https://127.0.0.1:2379' })
  .refine(
    (value) => /^https?:\/\//.test(value),
    'an etcd endpoint starts with http:// or https://',
  );

export const agentConfigSchema = z
  .strictObject({
    clusterId: clusterIdSchema,
    nodeId: nodeIdSchema,
    /** host:port the gRPC server binds. */
    listen: endpointSchema.default('0.0.0.0:9443'),
    /** host:port that peers and the manager use to reach this agent. */
    advertise: endpointSchema,
    etcd: z.strictObject({
      endpoints: z.array(httpUrl).min(1, 'at least one etcd endpoint is required'),
      /** Mutual TLS to etcd (https:// endpoints): etcd's CA, and this agent's client certificate and key. */
      tls: z.strictObject({ ca: filePath, cert: filePath, key: filePath }).optional(),
      /** etcd's own authentication, where enabled: a user and a file holding its password. */
      auth: z
        .strictObject({ username: z.string().min(1).max(128), passwordFile: filePath })
        .optional(),
    }),
    tls: z.strictObject({
      /** This agent's certificate (CN agent:<nodeId>, OU debvisor-agent), optionally followed by the CA. */
      cert: filePath,
      key: filePath,
      /** The cluster CA: issues agent certificates; its client certificates are accepted too. */
      ca: filePath,
      /** Further CAs whose client certificates are accepted (the manager's client CA). */
      clientCas: z.array(filePath).default([]),
      /**
       * The cluster CA's certificate and key on the nodes that sign renewals (one or a few); the
       * other agents renew through them. Read at each signing, so `ca begin|finish` apply at once.
       */
      issuer: z.strictObject({ cert: filePath, key: filePath }).optional(),
      /** How long the certificates this node issues are valid (default 24 h). */
      certificateLifetimeSeconds: z
        .int()
        .min(5)
        .max(397 * 86_400)
        .default(86_400),
      /** Renew this agent's certificate at a jittered 70–90 % of its lifetime (default true). */
      renew: z.boolean().default(true),
    }),
    stateDir: filePath,
    leaseTtlSeconds: z.int().min(2).max(3600).default(15),
    heartbeatIntervalSeconds: z.number().min(0.1).max(600).default(5),
    /** How long an agent trusts a cached API key record; bounds how fast revocation takes effect. */
    apiKeyCacheSeconds: z.number().min(0).max(60).default(5),
    hypervisor: z.strictObject({
      driver: z.enum(['sim', 'qemu', 'libvirt']),
    }),
    qemu: qemuSchema.prefault({}),
    libvirt: libvirtSchema.prefault({}),
    migration: migrationSchema.prefault({}),
    storage: z.strictObject({
      /** 'rbd': Ceph through the rbd and ceph tools (settings under `rbd`); 'sim': images in the cluster's etcd. */
      driver: z.enum(['sim', 'rbd']),
    }),
    rbd: rbdSchema.prefault({}),
    /** High availability inside the cluster (docs/ha.md). */
    ha: haConfigSchema.prefault({}),
    sim: simSchema.prefault({}),
    /** The Prometheus metrics listener: HTTPS with the agent's own certificate, GET /metrics. */
    metrics: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** host:port; loopback by default: open it (e.g. 0.0.0.0:9444) for a Prometheus on another host. */
        listen: endpointSchema.default('127.0.0.1:9444'),
        /** Require a client certificate from the cluster CA or tls.clientCas (mutual TLS for scrapers). */
        requireClientCert: z.boolean().default(false),
      })
      .prefault({}),
    /** An audit log of the RPCs this agent serves: JSON lines, hash-chained, rotated daily, 30 days kept. */
    audit: z
      .strictObject({
        /** e.g. /var/log/debvisor/rpc-audit.log; unset: no audit file. */
        file: filePath.optional(),
      })
      .prefault({}),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  })
  .refine((c) => c.heartbeatIntervalSeconds < c.leaseTtlSeconds, {
    message: 'must be shorter than leaseTtlSeconds (a third of it is a good choice)',
    path: ['heartbeatIntervalSeconds'],
  });

export type AgentConfig = z.infer<typeof agentConfigSchema>;
