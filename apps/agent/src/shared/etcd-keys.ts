/** The one description of what the agent keeps in its cluster's etcd (see docs/agent.md). */
export const ETCD_KEYS = {
  /** API key records: JSON, one per key id. */
  apiKeysPrefix: '/debvisor/rpc/apikeys/',
  apiKey: (id: string) => `/debvisor/rpc/apikeys/${id}`,
  /** Node registry: `info` and `status`, both bound to the node's lease. */
  nodesPrefix: '/debvisor/nodes/',
  node: (nodeId: string) => `/debvisor/nodes/${nodeId}/`,
  nodeInfo: (nodeId: string) => `/debvisor/nodes/${nodeId}/info`,
  nodeStatus: (nodeId: string) => `/debvisor/nodes/${nodeId}/status`,
  /** VM location index: which node owns a VM (not leased: it outlives an agent restart). */
  vmsPrefix: '/debvisor/vms/',
  vm: (uuid: string) => `/debvisor/vms/${uuid}`,
  /** The sim storage driver's RBD images, shared by every node of the cluster like Ceph. */
  simRbdPrefix: '/debvisor/sim/rbd/',
  simRbdPool: (pool: string) => `/debvisor/sim/rbd/${pool}/`,
  simRbdImage: (pool: string, image: string) => `/debvisor/sim/rbd/${pool}/${image}`,
} as const;
