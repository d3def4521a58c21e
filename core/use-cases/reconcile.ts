import { isActive } from '../domain/instances.js';
import type { EtcdCluster } from '../ports.js';
import { discoverCluster, type ClusterView, type DiscoveryDeps } from './discover.js';

/** Cluster health in numbers: what reconcile publishes as metrics so alarms can see a sick cluster. */
export interface HealthReport {
  readonly groupName: string;
  readonly reachable: boolean;
  readonly clusterId: string | undefined;
  readonly activeInstances: number;
  readonly members: number;
  readonly votingMembers: number;
  readonly learners: number;
  /** Members whose client URL answered Status. */
  readonly healthyMembers: number;
  readonly orphans: readonly string[];
  readonly instancesWithoutMember: readonly string[];
}

/** Pure: the numbers of a cluster view plus the set of members that answered Status. */
export function healthReport(view: ClusterView, healthyMemberIds: ReadonlySet<string>): HealthReport {
  const activeInstances = view.instances.filter(isActive).length;
  if (!view.cluster.live) {
    return {
      groupName: view.groupName,
      reachable: false,
      clusterId: undefined,
      activeInstances,
      members: 0,
      votingMembers: 0,
      learners: 0,
      healthyMembers: 0,
      orphans: [],
      instancesWithoutMember: [],
    };
  }
  const { members, membership } = view.cluster;
  return {
    groupName: view.groupName,
    reachable: true,
    clusterId: view.cluster.clusterId,
    activeInstances,
    members: members.length,
    votingMembers: membership.voting,
    learners: membership.learners,
    healthyMembers: members.filter((m) => healthyMemberIds.has(m.id)).length,
    orphans: membership.orphans.map((m) => m.name || m.id),
    instancesWithoutMember: membership.withoutMember,
  };
}

/**
 * Observes the cluster without changing it. 1. discover the group and the live cluster 2. ask each member
 * for Status through its own client URL 3. report the numbers.
 */
export async function observeCluster(
  groupName: string,
  deps: DiscoveryDeps & { readonly openCluster: (endpoints: readonly string[]) => EtcdCluster },
  explicitEndpoints?: readonly string[],
): Promise<HealthReport> {
  const view = await discoverCluster(groupName, deps, explicitEndpoints);
  const healthy = new Set<string>();
  if (view.cluster.live) {
    const probes = view.cluster.members
      .filter((m) => m.clientUrls.length > 0)
      .map(async (m) => {
        const etcd = deps.openCluster(m.clientUrls);
        try {
          const status = await etcd.status(m.clientUrls[0] as string);
          if (status.memberId === m.id) healthy.add(m.id);
        } catch {
          // An unanswered Status is exactly what the healthy-members count is for.
        } finally {
          etcd.close();
        }
      });
    await Promise.all(probes);
  }
  return healthReport(view, healthy);
}
