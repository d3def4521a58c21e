import { planAfterCompaction, planMaintenance, type DefragPolicy, type MaintenanceSkip, type SpaceStatus } from '../domain/maintenance.js';
import type { GroupInstance } from '../domain/instances.js';
import { hexMemberId, type Member } from '../domain/members.js';
import { describeError } from '../errors.js';
import type { Log } from '../logger.js';
import type { EtcdCluster, EtcdMaintenance, EtcdMembership } from '../ports.js';

export interface MaintenanceDeps {
  readonly openCluster: (endpoints: readonly string[]) => EtcdCluster & EtcdMaintenance & EtcdMembership;
  readonly log: Log;
  readonly policy: DefragPolicy;
  /** etcd's space quota (the same as the agents give etcd). */
  readonly quotaBytes: number;
  /** Deadline of one member's defragmentation. */
  readonly defragTimeoutMs: number;
  /** No defragmentation starts after this time (the function's own deadline, less a margin). */
  readonly deadline: number;
  readonly now: () => number;
}

export type MaintenanceResult =
  | { readonly action: 'skipped'; readonly reason: MaintenanceSkip | 'no-time-left' | 'failed'; readonly detail: string }
  | {
      readonly action: 'defragmented';
      readonly memberId: string;
      readonly beforeBytes: number;
      readonly afterBytes: number | undefined;
      readonly movedLeaderTo: string | undefined;
      readonly result: string;
    }
  | {
      readonly action: 'recovered-space' | 'recovering-space';
      readonly compactedTo: string;
      readonly defragmented: readonly string[];
      readonly disarmed: boolean;
      readonly detail: string;
    }
  | { readonly action: 'full-of-live-data'; readonly compactedTo: string; readonly inUseBytes: number; readonly detail: string };

async function freshStatuses(etcd: EtcdCluster, statuses: readonly SpaceStatus[]): Promise<SpaceStatus[]> {
  const answers = await Promise.allSettled(statuses.map((s) => etcd.status(s.endpoint)));
  return answers.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
}

/** The members whose etcd says a defragmentation is running now. */
async function defragInFlight(etcd: EtcdMaintenance, statuses: readonly SpaceStatus[]): Promise<string[]> {
  const busy = await Promise.all(statuses.map(async (s) => ((await etcd.defragmenting(s.endpoint)) === true ? [s.memberId] : [])));
  return busy.flat();
}

/**
 * One maintenance step per run (reconcile's schedule), each logged with its decision and reason: defragment
 * the one member that needs it most (planMaintenance), or recover from NOSPACE: compact to the newest
 * revision, then, unless the data in use still fills the quota, defragment the members whose file is still
 * over the limit, one at a time, and disarm the alarm.
 */
export async function maintainSpace(
  members: readonly Member[],
  statuses: readonly SpaceStatus[],
  instances: readonly GroupInstance[],
  deps: MaintenanceDeps,
): Promise<MaintenanceResult> {
  const etcd = deps.openCluster(members.flatMap((m) => m.clientUrls));
  try {
    const alarms = await etcd.alarms();
    const plan = planMaintenance({ members, statuses, instances, alarms, defragInFlight: await defragInFlight(etcd, statuses), policy: deps.policy });
    if (plan.action === 'skip') {
      deps.log.info('maintenance skipped', { reason: plan.reason, detail: plan.detail });
      return { action: 'skipped', reason: plan.reason, detail: plan.detail };
    }
    // moveLeader and the Status calls around a defragmentation come out of the margin the deadline keeps.
    if (deps.now() >= deps.deadline) {
      deps.log.warn('maintenance skipped', { reason: 'no-time-left', wanted: plan.action, detail: plan.reason });
      return { action: 'skipped', reason: 'no-time-left', detail: `wanted to ${plan.action}: ${plan.reason}` };
    }
    if (plan.action === 'defragment') {
      const memberId = hexMemberId(plan.member.memberId);
      let result = 'done';
      if (plan.moveLeaderTo !== undefined) {
        await etcd.moveLeader(plan.member.endpoint, plan.moveLeaderTo);
        deps.log.info('moved leadership before defragmenting the leader', { from: memberId, to: hexMemberId(plan.moveLeaderTo) });
      }
      try {
        await etcd.defragment(plan.member.endpoint, deps.defragTimeoutMs);
      } catch (error) {
        result = `failed: ${describeError(error)}`;
      }
      const after = (await freshStatuses(etcd, [plan.member]))[0];
      const outcome = {
        action: 'defragmented' as const,
        memberId,
        beforeBytes: plan.member.dbSize,
        afterBytes: after?.dbSize,
        movedLeaderTo: plan.moveLeaderTo === undefined ? undefined : hexMemberId(plan.moveLeaderTo),
        result,
      };
      deps.log.info('defragmented one member', { ...outcome, reason: plan.reason });
      return outcome;
    }

    // NOSPACE: compaction first; what it leaves decides the rest.
    deps.log.warn('recovering from NOSPACE: compacting', { revision: plan.revision, reason: plan.reason });
    await etcd.compact(plan.revision, deps.defragTimeoutMs);
    // The member that served the compaction shows its effect at once; another may show it only after its next
    // write transaction (bbolt frees pages then), which NOSPACE forbids: planAfterCompaction reads the smallest.
    const compacted = await freshStatuses(etcd, statuses);
    const recovery = planAfterCompaction(compacted, deps.quotaBytes, deps.policy);
    if (recovery.action === 'full-of-live-data') {
      deps.log.error('NOSPACE stays: the cluster is full of live data; it serves reads, refuses writes', { inUseBytes: recovery.inUseBytes, quotaBytes: deps.quotaBytes, reason: recovery.reason });
      return { action: 'full-of-live-data', compactedTo: plan.revision, inUseBytes: recovery.inUseBytes, detail: recovery.reason };
    }
    const defragmented: string[] = [];
    let stopped: string | undefined;
    for (const member of recovery.order) {
      if (deps.now() >= deps.deadline) {
        stopped = 'the deadline';
        break;
      }
      // Still one at a time: another run may have started one since this run looked.
      const busy = await defragInFlight(etcd, statuses);
      if (busy.length > 0) {
        stopped = `a defragmentation running on ${busy.map(hexMemberId).join(', ')}`;
        break;
      }
      // Writes are refused everywhere already; reads on this member wait while it defragments.
      await etcd.defragment(member.endpoint, deps.defragTimeoutMs);
      defragmented.push(hexMemberId(member.memberId));
    }
    const after = await freshStatuses(etcd, statuses);
    const allDone = stopped === undefined && after.length === statuses.length;
    const underQuota = after.every((s) => s.dbSize < deps.quotaBytes * deps.policy.recoverBelowRatio);
    if (allDone && underQuota) await etcd.disarmNoSpace();
    const detail = allDone
      ? underQuota
        ? `${recovery.reason}; every member defragmented; alarm disarmed`
        : `${recovery.reason}; every member defragmented, but a file is still over ${Math.round(deps.policy.recoverBelowRatio * 100)}% of the quota: alarm kept`
      : `${recovery.reason}; defragmented ${defragmented.length} of ${recovery.order.length} before ${stopped ?? 'a member stopped answering'}: the next run goes on with the files still over the limit`;
    const outcome = { action: allDone && underQuota ? ('recovered-space' as const) : ('recovering-space' as const), compactedTo: plan.revision, defragmented, disarmed: allDone && underQuota, detail };
    deps.log.warn(allDone && underQuota ? 'recovered from NOSPACE: writes are accepted again' : 'recovering from NOSPACE', { ...outcome });
    return outcome;
  } finally {
    etcd.close();
  }
}
