import { clientUrls, runningPeers, type GroupInstance, type UrlScheme } from '../domain/instances.js';
import { compareMembership, type MembershipView } from '../domain/membership.js';
import type { Member } from '../domain/members.js';
import { DiscoveryError, describeError } from '../errors.js';
import type { Log } from '../logger.js';
import type { EtcdCluster, InstanceIdentity, InstanceInventory } from '../ports.js';

export interface DiscoveryDeps {
  readonly inventory: InstanceInventory;
  readonly openCluster: (endpoints: readonly string[]) => EtcdCluster;
  readonly clientPort: number;
  /** `https` when etcd runs with TLS. */
  readonly scheme?: UrlScheme | undefined;
  readonly log: Log;
}

/** What the group and the etcd cluster look like right now. */
export interface ClusterView {
  readonly groupName: string;
  readonly instances: readonly GroupInstance[];
  /** Client URLs that were probed. */
  readonly endpoints: readonly string[];
  /** The live cluster, or why none answered. */
  readonly cluster:
    | { readonly live: true; readonly clusterId: string; readonly members: readonly Member[]; readonly membership: MembershipView }
    | { readonly live: false; readonly reason: string };
}

/**
 * The Auto Scaling group this instance belongs to: the operator's override when set, else the group that
 * DescribeAutoScalingInstances names. Fails with a clear error for an instance outside any group.
 */
export async function resolveGroup(
  identity: InstanceIdentity,
  inventory: InstanceInventory,
  override: string | undefined,
): Promise<string> {
  if (override !== undefined) return override;
  const group = await inventory.groupOf(identity.instanceId);
  if (group === undefined) {
    throw new DiscoveryError(
      `instance ${identity.instanceId} is not in any Auto Scaling group; launch it from the etcd group, ` +
        'or set ETCD_ASG_NAME to the group it should join',
    );
  }
  return group;
}

/**
 * Describes the group and probes its running instances' client URLs (or the explicit endpoints) for a live
 * cluster: the active ones and those held in Terminating:Wait, which still run a member until the hook
 * removes it (the last member of a scale-in to zero, backed up there). 1. describe the group 2. pick running
 * peers 3. list members through any that answers.
 */
export async function discoverCluster(
  groupName: string,
  deps: DiscoveryDeps,
  explicitEndpoints?: readonly string[],
): Promise<ClusterView> {
  const instances = await deps.inventory.instancesOf(groupName);
  const endpoints = explicitEndpoints ?? clientUrls(runningPeers(instances), deps.clientPort, deps.scheme);
  if (endpoints.length === 0) {
    return { groupName, instances, endpoints, cluster: { live: false, reason: 'no running instance has an address' } };
  }
  const etcd = deps.openCluster(endpoints);
  try {
    const { clusterId, members } = await etcd.listMembers();
    deps.log.debug('found live cluster', { groupName, clusterId, members: members.length });
    return {
      groupName,
      instances,
      endpoints,
      cluster: { live: true, clusterId, members, membership: compareMembership(members, instances) },
    };
  } catch (error) {
    deps.log.info('no live cluster answered', { groupName, endpoints, error: describeError(error) });
    return { groupName, instances, endpoints, cluster: { live: false, reason: describeError(error) } };
  } finally {
    etcd.close();
  }
}
