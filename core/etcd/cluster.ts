import { Etcd3, type IOptions } from 'etcd3';
import type { Member } from '../domain/members.js';
import { EtcdUnavailableError, describeError } from '../errors.js';
import type { EtcdCluster, MemberStatus } from '../ports.js';

export interface EtcdClientOptions {
  readonly dialTimeoutMs: number;
  /** Deadline of every RPC, so a probe of a dead member fails fast instead of hanging. */
  readonly callTimeoutMs: number;
}

function clientOptions(hosts: readonly string[], options: EtcdClientOptions): IOptions {
  return {
    hosts: [...hosts],
    dialTimeout: options.dialTimeoutMs,
    defaultCallOptions: () => ({ deadline: Date.now() + options.callTimeoutMs }),
  };
}

/** A key nobody writes: reading it linearizably proves the cluster has quorum without touching user data. */
const QUORUM_PROBE_KEY = '\u0000etcd-aws/quorum-probe';

/** etcd's v3 API through the `etcd3` client; the only module that imports it. */
export class Etcd3Cluster implements EtcdCluster {
  private readonly client: Etcd3;

  constructor(
    private readonly endpoints: readonly string[],
    private readonly options: EtcdClientOptions,
  ) {
    if (endpoints.length === 0) throw new EtcdUnavailableError('no etcd endpoints to connect to');
    this.client = new Etcd3(clientOptions(endpoints, options));
  }

  async listMembers(): Promise<{ clusterId: string; members: Member[] }> {
    try {
      // etcd 3.4 serves MemberList from the answering member's local state, even when that member has
      // lost quorum (the request's `linearizable` flag only exists from 3.5 on). A linearizable read needs
      // a quorum (ReadIndex), so it tells a live cluster from a lone survivor on every version.
      await this.client.get(QUORUM_PROBE_KEY).exists();
    } catch (error) {
      throw new EtcdUnavailableError(
        `no etcd member with quorum answered through ${this.endpoints.join(', ')}: ${describeError(error)}`,
        { cause: error },
      );
    }
    try {
      const out = await this.client.cluster.memberList({ linearizable: true });
      return {
        clusterId: out.header.cluster_id,
        members: out.members.map((m) => ({
          id: m.ID,
          name: m.name,
          peerUrls: m.peerURLs,
          clientUrls: m.clientURLs,
          isLearner: m.isLearner,
        })),
      };
    } catch (error) {
      throw new EtcdUnavailableError(
        `cannot list etcd members through ${this.endpoints.join(', ')}: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  async status(endpoint: string): Promise<MemberStatus> {
    // Status describes the member that answers, so it needs a connection to that member alone.
    const single = new Etcd3(clientOptions([endpoint], this.options));
    try {
      const s = await single.maintenance.status();
      return {
        endpoint,
        memberId: s.header.member_id,
        clusterId: s.header.cluster_id,
        leaderId: s.leader,
        revision: s.header.revision,
        raftIndex: s.raftIndex,
        raftTerm: s.raftTerm,
        version: s.version,
        dbSize: Number(s.dbSize),
        isLearner: s.isLearner,
      };
    } catch (error) {
      throw new EtcdUnavailableError(`etcd member at ${endpoint} did not answer Status: ${describeError(error)}`, {
        cause: error,
      });
    } finally {
      single.close();
    }
  }

  close(): void {
    this.client.close();
  }
}
