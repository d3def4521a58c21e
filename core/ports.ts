import type { GroupInstance } from './domain/instances.js';
import type { Member } from './domain/members.js';

/** Who this EC2 instance is, from the instance metadata service (IMDSv2). */
export interface InstanceIdentity {
  readonly instanceId: string;
  readonly region: string;
  readonly privateIp: string;
  readonly availabilityZone: string;
}

export interface IdentitySource {
  identity(): Promise<InstanceIdentity>;
}

/** The Auto Scaling group and its instances, as the AWS APIs describe them. */
export interface InstanceInventory {
  /** The group an instance belongs to, or undefined when it belongs to none. */
  groupOf(instanceId: string): Promise<string | undefined>;
  /** Every instance of the group with its lifecycle state and private IP. Throws when the group does not exist. */
  instancesOf(groupName: string): Promise<GroupInstance[]>;
}

/** Status of one member, from the Maintenance Status RPC. */
export interface MemberStatus {
  readonly endpoint: string;
  readonly memberId: string;
  readonly clusterId: string;
  readonly leaderId: string;
  readonly revision: string;
  readonly raftIndex: string;
  readonly raftTerm: string;
  readonly version: string;
  readonly dbSize: number;
  readonly isLearner: boolean;
}

/** A running etcd cluster, reached through the client URLs it was opened with. */
export interface EtcdCluster {
  /** Members of the cluster, only when it has quorum; throws EtcdUnavailableError otherwise. */
  listMembers(): Promise<{ clusterId: string; members: Member[] }>;
  /** Status of the member serving `endpoint` (one of the URLs the cluster was opened with). */
  status(endpoint: string): Promise<MemberStatus>;
  close(): void;
}
