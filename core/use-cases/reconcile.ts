import { isActive } from '../domain/instances.js';
import { hexMemberId, type Member } from '../domain/members.js';
import type { AgentRegistration } from '../domain/election.js';
import { cutOffMember, instancesWithoutAgent, planReconcile } from '../domain/reconcile.js';
import { describeError } from '../errors.js';
import type { EtcdCluster, EtcdMembership, MemberStatus } from '../ports.js';
import { discoverCluster, type ClusterView, type DiscoveryDeps } from './discover.js';
import { maintainSpace, type MaintenanceDeps, type MaintenanceResult } from './maintenance.js';

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
  /** The largest database among the members that answered Status, in bytes, and as a percentage of the quota. */
  readonly dbSizeBytes: number;
  readonly dbQuotaPercent: number;
  /** The largest database in use (dbSize less its free pages), in bytes. */
  readonly dbSizeInUseBytes: number;
  /** Each answering member's database: size, in use, and size as a percentage of the quota. */
  readonly memberSpace: ReadonlyArray<{ readonly name: string; readonly dbSizeBytes: number; readonly dbSizeInUseBytes: number; readonly dbQuotaPercent: number }>;
}

/** Pure: the numbers of a cluster view plus the Status answers of its members. */
export function healthReport(view: ClusterView, statuses: readonly MemberStatus[], quotaBytes: number): HealthReport {
  const activeInstances = view.instances.filter(isActive).length;
  const healthyMemberIds = new Set(statuses.map((s) => s.memberId));
  const dbSizeBytes = Math.max(0, ...statuses.map((s) => s.dbSize));
  const percent = (bytes: number) => Math.round((bytes / quotaBytes) * 1000) / 10;
  const dbQuotaPercent = percent(dbSizeBytes);
  const dbSizeInUseBytes = Math.max(0, ...statuses.map((s) => s.dbSizeInUse));
  const names = new Map((view.cluster.live ? view.cluster.members : []).map((m) => [m.id, m.name]));
  const memberSpace = statuses.map((s) => ({ name: names.get(s.memberId) || hexMemberId(s.memberId), dbSizeBytes: s.dbSize, dbSizeInUseBytes: s.dbSizeInUse, dbQuotaPercent: percent(s.dbSize) }));
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
      dbSizeBytes,
      dbQuotaPercent,
      dbSizeInUseBytes,
      memberSpace,
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
    dbSizeBytes,
    dbQuotaPercent,
    dbSizeInUseBytes,
    memberSpace,
  };
}

export interface ReconcileDeps extends DiscoveryDeps {
  readonly openCluster: (endpoints: readonly string[]) => EtcdCluster & EtcdMembership;
  readonly now: () => number;
  /** How long a member's instance must have been gone before the member is removed. */
  readonly graceMs: number;
  /** etcd's space quota, for DbQuotaPercent. */
  readonly quotaBytes: number;
  /** The agents' registrations; absent, instances without a started agent are not looked for. */
  readonly registrations?: () => Promise<AgentRegistration[]>;
  /** How long after its launch an instance may go without its agent registering. */
  readonly agentStartGraceMs?: number;
  /** SetInstanceHealth Unhealthy: the group replaces the instance. */
  readonly setUnhealthy?: (instanceId: string) => Promise<void>;
  /** How long a member the quorum side cannot reach may be cut off before its instance is marked unhealthy. */
  readonly cutOffGraceMs?: number;
  /** How recent a registration must be to say anything now. */
  readonly registrationFreshMs?: number;
  /** Defragmentation and NOSPACE recovery, on runs that changed nothing else; absent, none. */
  readonly maintenance?: MaintenanceDeps;
}

export interface ReconcileResult extends HealthReport {
  readonly removed: { readonly memberId: string; readonly name: string; readonly reason: string; readonly result: string } | undefined;
  readonly promoted: ReadonlyArray<{ readonly memberId: string; readonly result: string }>;
  readonly kept: ReadonlyArray<{ readonly memberId: string; readonly name: string; readonly reason: string }>;
  /** An instance whose agent never registered, marked unhealthy this run. */
  readonly markedUnhealthy: string | undefined;
  /** An instance whose member was cut off from the quorum side for longer than the grace period, marked unhealthy this run. */
  readonly cutOff: { readonly instanceId: string; readonly memberId: string; readonly reason: string; readonly removal: string } | undefined;
  /** This run's maintenance step (defragmentation, NOSPACE recovery) or why there was none. */
  readonly maintenance: MaintenanceResult | undefined;
}

/**
 * The safety net for missed lifecycle events and crashed agents. 1. discover the group and the live cluster
 * 2. ask each member for Status through its own client URL 3. look up the instances of orphan members in EC2
 * 4. decide (planReconcile) 5. remove at most one orphan, promote caught-up learners 6. report the numbers.
 */
export async function reconcileCluster(
  groupName: string,
  deps: ReconcileDeps,
  explicitEndpoints?: readonly string[],
): Promise<ReconcileResult> {
  const view = await discoverCluster(groupName, deps, explicitEndpoints);
  // Also without a live cluster: an instance whose agent never started blocks a seed election.
  const markedUnhealthy = await markInstanceWithoutAgent(view, deps);
  const statuses: MemberStatus[] = [];
  if (!view.cluster.live) return { ...healthReport(view, statuses, deps.quotaBytes), removed: undefined, promoted: [], kept: [], markedUnhealthy, cutOff: undefined, maintenance: undefined };
  const { members, membership } = view.cluster;
  await Promise.all(
    members
      .filter((m) => m.clientUrls.length > 0)
      .map(async (m) => {
        const etcd = deps.openCluster(m.clientUrls);
        try {
          const status = await etcd.status(m.clientUrls[0] as string);
          if (status.memberId === m.id) statuses.push(status);
        } catch {
          // An unanswered Status is exactly what the healthy-members count is for.
        } finally {
          etcd.close();
        }
      }),
  );
  const healthy = new Set(statuses.map((s) => s.memberId));
  const orphanNames = membership.orphans.map((m) => m.name).filter((n) => n !== '');
  const facts = await deps.inventory.instanceFacts(orphanNames);
  const plan = planReconcile({ members, instances: view.instances, healthyMemberIds: healthy, facts, now: deps.now(), graceMs: deps.graceMs });

  const through = members.filter((m) => healthy.has(m.id) && m.id !== plan.remove?.member.id).flatMap((m) => m.clientUrls);
  let removed: ReconcileResult['removed'];
  const promoted: Array<{ memberId: string; result: string }> = [];
  if ((plan.remove || plan.promote.length > 0) && through.length > 0) {
    const etcd = deps.openCluster(through);
    try {
      if (plan.remove) {
        const result = await etcd.remove(plan.remove.member.id);
        removed = { memberId: hexMemberId(plan.remove.member.id), name: plan.remove.member.name, reason: plan.remove.reason, result };
        deps.log.info('removed orphan member', removed);
      }
      for (const learner of plan.promote) {
        const result = await etcd.promote(learner.id).catch((error: unknown) => `failed: ${describeError(error)}`);
        promoted.push({ memberId: hexMemberId(learner.id), result });
        deps.log.info('promoting stranded learner', { memberId: hexMemberId(learner.id), name: learner.name, result });
      }
    } finally {
      etcd.close();
    }
  }
  const kept = plan.kept.map((k) => ({ memberId: hexMemberId(k.member.id), name: k.member.name, reason: k.reason }));
  if (kept.length > 0) deps.log.info('kept orphan members', { kept });
  // Only this side reached a quorum: a member it cannot reach for long is the one cut off.
  const cutOff = markedUnhealthy === undefined ? await markCutOffMember(members, view, healthy, deps) : undefined;
  // Maintenance only on a run that changed nothing else: never a defragmentation beside a membership change.
  const changed = removed !== undefined || promoted.length > 0 || markedUnhealthy !== undefined || cutOff !== undefined;
  const maintenance = deps.maintenance && !changed ? await maintainSpace(members, statuses, view.instances, deps.maintenance).catch((error: unknown) => {
    deps.log.error('maintenance failed', { error: describeError(error) });
    return { action: 'skipped' as const, reason: 'failed' as const, detail: describeError(error) };
  }) : undefined;
  return { ...healthReport(view, statuses, deps.quotaBytes), removed, promoted, kept, markedUnhealthy, cutOff, maintenance };
}

/**
 * Removes the member of (at most) one instance cut off from the quorum side (cutOffMember), then marks the
 * instance unhealthy so the group replaces it; returns it.
 */
async function markCutOffMember(
  members: readonly Member[],
  view: ClusterView,
  healthy: ReadonlySet<string>,
  deps: ReconcileDeps,
): Promise<ReconcileResult['cutOff']> {
  if (!deps.registrations || !deps.setUnhealthy || deps.cutOffGraceMs === undefined || deps.registrationFreshMs === undefined) return undefined;
  try {
    const target = cutOffMember({
      members,
      instances: view.instances,
      healthyMemberIds: healthy,
      registrations: await deps.registrations(),
      now: deps.now(),
      graceMs: deps.cutOffGraceMs,
      freshMs: deps.registrationFreshMs,
    });
    if (!target) return undefined;
    const fields = { instanceId: target.instance.instanceId, memberId: hexMemberId(target.member.id), reason: target.reason, since: new Date(target.since).toISOString() };
    // The member first: while it is listed, etcd's strict reconfiguration check refuses every other change
    // (no replacement joins, not even the one a rolling update waits for, which suspends ReplaceUnhealthy).
    const through = members.filter((m) => healthy.has(m.id) && m.id !== target.member.id).flatMap((m) => m.clientUrls);
    const etcd = deps.openCluster(through);
    let removal: string;
    try {
      removal = await etcd.remove(target.member.id);
    } catch (error) {
      removal = `failed: ${describeError(error)}`;
    } finally {
      etcd.close();
    }
    deps.log.warn('removed the member of an instance cut off from the quorum', { ...fields, result: removal });
    await deps.setUnhealthy(target.instance.instanceId);
    deps.log.warn('marked an instance unhealthy: its member is cut off from the quorum; the group replaces it through the termination hook', {
      ...fields,
      graceMs: deps.cutOffGraceMs,
    });
    return { instanceId: target.instance.instanceId, memberId: hexMemberId(target.member.id), reason: target.reason, removal };
  } catch (error) {
    deps.log.warn('could not look for members cut off from the quorum', { error: describeError(error) });
    return undefined;
  }
}

/** Marks unhealthy (at most) one instance whose agent never registered (instancesWithoutAgent); returns it. */
async function markInstanceWithoutAgent(view: ClusterView, deps: ReconcileDeps): Promise<string | undefined> {
  if (!deps.registrations || !deps.setUnhealthy || deps.agentStartGraceMs === undefined) return undefined;
  try {
    const [target] = instancesWithoutAgent({
      instances: view.instances,
      registrations: await deps.registrations(),
      members: view.cluster.live ? view.cluster.members : undefined,
      now: deps.now(),
      graceMs: deps.agentStartGraceMs,
    });
    if (!target) return undefined;
    await deps.setUnhealthy(target.instanceId);
    deps.log.warn('marked an instance unhealthy: its agent never registered', {
      instanceId: target.instanceId,
      launchedAt: target.launchedAt === undefined ? undefined : new Date(target.launchedAt).toISOString(),
      graceMs: deps.agentStartGraceMs,
    });
    return target.instanceId;
  } catch (error) {
    deps.log.warn('could not look for instances without a started agent', { error: describeError(error) });
    return undefined;
  }
}
