import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import {
  caFingerprints,
  type PeerCluster,
  type PeerClustersRepository,
} from './peer-clusters.repository';

/**
 * The other clusters this cluster exchanges VMs with: only the CAs the operator registered here
 * (admin CLI `peer trust`). A migration to or from any other CA is refused, whoever asks.
 */
export class PeerClusters {
  constructor(
    private readonly store: Pick<PeerClustersRepository, 'list' | 'put' | 'remove'>,
    private readonly clock: Clock,
  ) {}

  /** The trusted peer cluster whose CA is (among) `caPem`; undefined when none. */
  async trustedFor(caPem: string): Promise<PeerCluster | undefined> {
    const wanted = caFingerprints(caPem);
    if (wanted.length === 0) return undefined;
    const peers = await this.store.list();
    return peers.find((peer) =>
      caFingerprints(peer.caPem).some((fingerprint) => wanted.includes(fingerprint)),
    );
  }

  async trust(clusterId: string, caPem: string): Promise<PeerCluster> {
    if (caFingerprints(caPem).length === 0)
      throw new AgentError(ErrorCode.InvalidArgument, 'the file holds no CA certificate');
    const entry = { clusterId, caPem, addedAt: this.clock.now().toISOString() };
    await this.store.put(entry);
    return entry;
  }

  forget(clusterId: string): Promise<boolean> {
    return this.store.remove(clusterId);
  }

  list(): Promise<PeerCluster[]> {
    return this.store.list();
  }
}
