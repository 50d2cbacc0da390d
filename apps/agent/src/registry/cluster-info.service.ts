import type { GetClusterInfoResponse } from '@debvisor/proto';
import type { Caller } from '../rpc/call-context';
import { AGENT_VERSION } from '../shared/version';
import type { RegistryService } from './registry.service';

/** Who and where: the manager's connection test calls this to learn the cluster and its key's rights. */
export class ClusterInfoService {
  constructor(
    private readonly identity: { clusterId: string; nodeId: string },
    private readonly registry: Pick<RegistryService, 'aliveNodes'>,
  ) {}

  async describe(caller: Caller): Promise<GetClusterInfoResponse> {
    return {
      clusterId: this.identity.clusterId,
      nodeId: this.identity.nodeId,
      agentVersion: AGENT_VERSION,
      nodeCount: (await this.registry.aliveNodes()).length,
      permissions: [...caller.permissions],
      principal: caller.principal,
    };
  }
}
