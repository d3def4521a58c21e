import type { GroupInstance } from './instances.js';
import type { Member } from './members.js';

/**
 * Keeping the database small without an operator: which member to defragment, if any, and what to do when
 * the space quota is reached (etcd's NOSPACE alarm: every write refused until it is disarmed).
 *
 * Defragmentation rewrites a member's database file and blocks that member's reads and writes meanwhile, so
 * it runs on one member at a time, only while every member is healthy and voting (a second member busy or
 * missing would cost the quorum), followers first, and the leader only after its leadership has moved.
 */

/** What the decision reads of each member's Status. */
export interface SpaceStatus {
  readonly memberId: string;
  readonly endpoint: string;
  readonly leaderId: string;
  readonly revision: string;
  /** How far this member's raft log goes: leadership moves to the follower furthest along. */
  readonly raftIndex: string;
  readonly dbSize: number;
  readonly dbSizeInUse: number;
  readonly isLearner: boolean;
}

export interface DefragPolicy {
  /** Share of a member's file that is free pages (1 - in use / size) at which it is worth defragmenting. */
  readonly minFreeRatio: number;
  /** Free bytes at which it is worth it (a small file defragments in milliseconds but reclaims nothing). */
  readonly minFreeBytes: number;
  /**
   * After a NOSPACE alarm and a compaction: the share of the quota the data in use must be under to disarm
   * the alarm. Above it the cluster is full of live data: disarming would only let it fill again at once.
   */
  readonly recoverBelowRatio: number;
}

export type MaintenancePlan =
  | {
      readonly action: 'defragment';
      readonly member: SpaceStatus;
      /** The member to hand leadership to first, when the one to defragment leads. */
      readonly moveLeaderTo: string | undefined;
      readonly reason: string;
    }
  | {
      /** NOSPACE: compact to `revision`, then decide on what compaction left (planAfterCompaction). */
      readonly action: 'recover-space';
      readonly revision: string;
      readonly reason: string;
    }
  | { readonly action: 'skip'; readonly reason: MaintenanceSkip; readonly detail: string };

export type MaintenanceSkip =
  | 'corrupt-alarm'
  | 'not-every-member-answered'
  | 'membership-changing'
  | 'group-changing'
  | 'defrag-in-progress'
  | 'nothing-to-reclaim';

const free = (s: SpaceStatus) => Math.max(0, s.dbSize - s.dbSizeInUse);
const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

/**
 * Pure: what this run does for space, given every member, the Status answers of those that answered, the
 * group's instances, and the members whose etcd says a defragmentation is running (another run's, or one
 * whose client gave up while etcd went on).
 */
export function planMaintenance(input: {
  readonly members: readonly Member[];
  readonly statuses: readonly SpaceStatus[];
  readonly instances: readonly GroupInstance[];
  readonly alarms: ReadonlyArray<{ readonly memberId: string; readonly alarm: string }>;
  readonly defragInFlight: readonly string[];
  readonly policy: DefragPolicy;
}): MaintenancePlan {
  const { members, statuses, alarms, policy } = input;
  if (alarms.some((a) => a.alarm === 'CORRUPT')) {
    // A member whose data differs from the others': rewriting files would only hide it. An operator's case.
    return { action: 'skip', reason: 'corrupt-alarm', detail: 'a CORRUPT alarm is raised: no maintenance until an operator has looked' };
  }
  const answered = new Set(statuses.map((s) => s.memberId));
  const silent = members.filter((m) => !answered.has(m.id));
  if (silent.length > 0) {
    return { action: 'skip', reason: 'not-every-member-answered', detail: `no Status from ${silent.map((m) => m.name || m.id).join(', ')}` };
  }
  if (members.some((m) => m.isLearner)) {
    return { action: 'skip', reason: 'membership-changing', detail: 'a learner is catching up: the membership is changing' };
  }
  if (input.defragInFlight.length > 0) {
    // Never two at once: a member still busy (another run's defragmentation, or one etcd went on with after
    // its client's deadline) is one more than a quorum of three can spare.
    const names = input.defragInFlight.map((id) => members.find((m) => m.id === id)?.name || id);
    return { action: 'skip', reason: 'defrag-in-progress', detail: `a defragmentation is running on ${names.join(', ')}` };
  }
  if (alarms.some((a) => a.alarm === 'NOSPACE')) {
    const revision = statuses.map((s) => BigInt(s.revision)).reduce((a, b) => (a > b ? a : b), 0n);
    return { action: 'recover-space', revision: String(revision), reason: 'the NOSPACE alarm is raised: writes are refused until space is reclaimed' };
  }
  // A member change elsewhere (the lifecycle function removing a terminating instance's member, an agent
  // adding one) while a member cannot apply would stall the quorum: a follower sends nothing until it has
  // applied a committed configuration change. Only a group at rest, every instance in service and healthy,
  // one member each. (NOSPACE above goes on regardless: writes are refused already.)
  const unsettled = input.instances.filter((i) => i.lifecycleState !== 'InService' || i.healthStatus !== 'Healthy');
  if (unsettled.length > 0 || input.instances.length !== members.length) {
    return {
      action: 'skip',
      reason: 'group-changing',
      detail:
        unsettled.length > 0
          ? `instances not at rest: ${unsettled.map((i) => `${i.instanceId} ${i.lifecycleState}/${i.healthStatus}`).join(', ')}`
          : `${members.length} members for ${input.instances.length} instances`,
    };
  }
  const candidates = statuses
    .filter((s) => free(s) >= policy.minFreeBytes && s.dbSize > 0 && free(s) / s.dbSize >= policy.minFreeRatio)
    .sort((a, b) => free(b) - free(a));
  const follower = candidates.find((s) => s.leaderId !== s.memberId);
  const pick = follower ?? candidates[0];
  if (!pick) {
    const worst = [...statuses].sort((a, b) => free(b) - free(a))[0];
    return {
      action: 'skip',
      reason: 'nothing-to-reclaim',
      detail: worst
        ? `the most fragmented member frees ${mib(free(worst))} of ${mib(worst.dbSize)}: under ${Math.round(policy.minFreeRatio * 100)}% or ${mib(policy.minFreeBytes)}`
        : 'no member answered',
    };
  }
  const leads = pick.leaderId === pick.memberId;
  // The follower furthest along its log takes over: the shortest catch-up, the least likely to lose an election.
  const successor = leads
    ? statuses.filter((s) => s.memberId !== pick.memberId).sort((a, b) => (BigInt(b.raftIndex) > BigInt(a.raftIndex) ? 1 : BigInt(b.raftIndex) < BigInt(a.raftIndex) ? -1 : 0))[0]
    : undefined;
  return {
    action: 'defragment',
    member: pick,
    moveLeaderTo: successor?.memberId,
    reason: `${mib(free(pick))} of its ${mib(pick.dbSize)} are free pages${leads ? '; it leads, so leadership moves first' : ''}`,
  };
}

export type RecoveryPlan =
  | { readonly action: 'defragment-all'; readonly order: readonly SpaceStatus[]; readonly reason: string }
  | { readonly action: 'full-of-live-data'; readonly inUseBytes: number; readonly reason: string };

/**
 * Pure: after a NOSPACE alarm and a compaction, whether defragmenting every member whose file is still over
 * the limit (followers first, the leader last, without moving its leadership: writes are refused anyway)
 * and disarming brings the cluster back, or whether it is full of live data: then the alarm
 * stays (reads keep being served), and saying so is all that is left.
 */
export function planAfterCompaction(statuses: readonly SpaceStatus[], quotaBytes: number, policy: DefragPolicy): RecoveryPlan {
  // Every member holds the same data; one whose Status does not show the compaction yet (etcd frees its pages
  // at that member's next write transaction) only looks fuller. The smallest is the truth, and every file is
  // checked again after its defragmentation, before the alarm is disarmed.
  const inUse = statuses.length === 0 ? 0 : Math.min(...statuses.map((s) => s.dbSizeInUse));
  const limit = quotaBytes * policy.recoverBelowRatio;
  if (inUse >= limit) {
    return {
      action: 'full-of-live-data',
      inUseBytes: inUse,
      reason: `after compaction ${mib(inUse)} are in use, over ${Math.round(policy.recoverBelowRatio * 100)}% of the ${mib(quotaBytes)} quota: delete data or raise the quota`,
    };
  }
  // Only the files still over the limit: a run cut short by its deadline leaves the rest to the next one,
  // which starts where it stopped, not again from the first member.
  const order = statuses
    .filter((s) => s.dbSize >= limit)
    .sort((a, b) => Number(a.leaderId === a.memberId) - Number(b.leaderId === b.memberId));
  return {
    action: 'defragment-all',
    order,
    reason: `after compaction ${mib(inUse)} are in use of the ${mib(quotaBytes)} quota; ${order.length} file(s) over ${Math.round(policy.recoverBelowRatio * 100)}% of it`,
  };
}
