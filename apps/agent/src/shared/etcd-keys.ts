/** The one description of what the agent keeps in its cluster's etcd (see docs/agent.md). */
export const ETCD_KEYS = {
  /** API key records: JSON, one per key id. */
  apiKeysPrefix: '/debvisor/rpc/apikeys/',
  apiKey: (id: string) => `/debvisor/rpc/apikeys/${id}`,
  /** Revoked or decommissioned nodes (the deny list every agent watches): JSON, one per node id. */
  revokedNodesPrefix: '/debvisor/trust/revoked-nodes/',
  revokedNode: (nodeId: string) => `/debvisor/trust/revoked-nodes/${nodeId}`,
  /** Peer clusters whose CA the operator trusts as migration partners: JSON, one per cluster id. */
  peerClustersPrefix: '/debvisor/trust/peer-clusters/',
  peerCluster: (clusterId: string) => `/debvisor/trust/peer-clusters/${clusterId}`,
  /** The cluster CAs every agent trusts (a CA rotation's overlap holds two): JSON. */
  clusterCas: '/debvisor/trust/cluster-cas',
  /** Which CA issued each node's current certificate, and until when: JSON, one per node id. */
  nodeCertsPrefix: '/debvisor/trust/node-certs/',
  nodeCert: (nodeId: string) => `/debvisor/trust/node-certs/${nodeId}`,
  /** Node registry: `info` and `status`, both bound to the node's lease. */
  nodesPrefix: '/debvisor/nodes/',
  node: (nodeId: string) => `/debvisor/nodes/${nodeId}/`,
  nodeInfo: (nodeId: string) => `/debvisor/nodes/${nodeId}/info`,
  nodeStatus: (nodeId: string) => `/debvisor/nodes/${nodeId}/status`,
  /** The node's HA health score (probes, reasons, thresholds), bound to the node's lease. */
  nodeHealth: (nodeId: string) => `/debvisor/nodes/${nodeId}/health`,
  /** HA (docs/ha.md). The coordinator election: etcd3 Election keys `<prefix><lease hex>`; the lowest create revision leads and is the fencing epoch. */
  haElectionPrefix: '/debvisor/ha/election/coordinator/',
  /** What the coordinator must know of each HA node after its lease is gone (fence addresses, groups, CPU), JSON. */
  haMembersPrefix: '/debvisor/ha/members/',
  haMember: (nodeId: string) => `/debvisor/ha/members/${nodeId}`,
  /** HA policy per VM (the operator's intent), JSON. */
  haPoliciesPrefix: '/debvisor/ha/policies/',
  haPolicy: (uuid: string) => `/debvisor/ha/policies/${uuid}`,
  /** HA state per VM, written by the coordinator only (guarded by its leader key), JSON. */
  haResourcesPrefix: '/debvisor/ha/resources/',
  haResource: (uuid: string) => `/debvisor/ha/resources/${uuid}`,
  /** The last definition of each HA VM, kept by its node, so that another node can start it. */
  haSpecsPrefix: '/debvisor/ha/specs/',
  haSpec: (uuid: string) => `/debvisor/ha/specs/${uuid}`,
  /** Fence records per node, written by the coordinator (guarded), JSON. */
  haFencesPrefix: '/debvisor/ha/fences/',
  haFence: (nodeId: string) => `/debvisor/ha/fences/${nodeId}`,
  /** Maintenance requests and drain progress per node, JSON. */
  haMaintenancePrefix: '/debvisor/ha/maintenance/',
  haMaintenance: (nodeId: string) => `/debvisor/ha/maintenance/${nodeId}`,
  /** HA events (detection, fence, recovery, drain), JSON, key `<ms since epoch, 15 digits>-<node>-<seq>`; the last 1000 kept. */
  haEventsPrefix: '/debvisor/ha/events/',
  /** VM location index: which node owns a VM (not leased: it outlives an agent restart). */
  vmsPrefix: '/debvisor/vms/',
  vm: (uuid: string) => `/debvisor/vms/${uuid}`,
  /** How each VM snapshot was taken (consistency and its reason): JSON, one per VM and snapshot name. */
  vmSnapshotsPrefix: '/debvisor/vm-snapshots/',
  vmSnapshots: (uuid: string) => `/debvisor/vm-snapshots/${uuid}/`,
  vmSnapshot: (uuid: string, snapshot: string) => `/debvisor/vm-snapshots/${uuid}/${snapshot}`,
  /** The sim storage driver's RBD images, shared by every node of the cluster like Ceph. */
  simRbdPrefix: '/debvisor/sim/rbd/',
  simRbdPool: (pool: string) => `/debvisor/sim/rbd/${pool}/`,
  simRbdImage: (pool: string, image: string) => `/debvisor/sim/rbd/${pool}/${image}`,
  /** Its pools' mirroring (site name, peers), peer sites' reports, the blocklist and the replayer's leader. */
  simRbdMirrorPoolsPrefix: '/debvisor/sim/rbd-mirror/pools/',
  simRbdMirrorPool: (pool: string) => `/debvisor/sim/rbd-mirror/pools/${pool}`,
  simRbdMirrorPeerReports: (pool: string, globalId: string) =>
    `/debvisor/sim/rbd-mirror/reports/${pool}/${globalId}/`,
  simRbdMirrorPeerReport: (pool: string, globalId: string, site: string) =>
    `/debvisor/sim/rbd-mirror/reports/${pool}/${globalId}/${site}`,
  simRbdBlocklist: (client: string) => `/debvisor/sim/rbd-blocklist/${client}`,
  simRbdMirrorLeader: '/debvisor/sim/rbd-mirror/leader',
} as const;
