import type { InstanceFact } from './reconcile.js';
import { quorumOf, type Member } from './members.js';

/** EC2 states from which an instance never comes back with its etcd data (stopped ones do come back). */
const GONE_FOR_GOOD: ReadonlySet<string> = new Set(['shutting-down', 'terminated']);

/** Members are named after their instance; anything else cannot be looked up in EC2, so it is never "gone". */
const INSTANCE_ID = /^i-[0-9a-f]+$/;

/** What a voting member's instance is, as far as EC2 can tell. */
export type VoterFate =
  | { readonly gone: true; readonly why: 'terminated' | 'shutting-down' | 'unknown-to-ec2' }
  | { readonly gone: false; readonly why: 'not-an-instance-name' | `instance-${string}` };

/** Status of a member as its own client URL answered it (only the fields the decision reads). */
export interface AnsweredStatus {
  readonly memberId: string;
  readonly clusterId: string;
  readonly raftIndex: string;
  /** The member's store revision (what a backup's revision compares with). */
  readonly revision?: string;
}

/** A voter's position in the raft log, compared to pick the survivor with the newest data. */
export interface RaftPosition {
  readonly memberId: string;
  readonly name: string;
  readonly raftIndex: string;
}

export interface GoneVoter {
  readonly memberId: string;
  readonly name: string;
  readonly why: Extract<VoterFate, { gone: true }>['why'];
}

export type QuorumRecoveryDecline =
  | 'quorum-present'
  | 'grace-not-elapsed'
  | 'not-a-member'
  | 'own-instance-not-confirmed'
  | 'cluster-serves-elsewhere'
  | 'quorum-still-possible'
  | 'gone-member-answers'
  | 'remaining-voter-silent'
  | 'newer-data-elsewhere'
  | 'learner-without-backup';

/** Whether this agent restarts its etcd with --force-new-cluster, and why (not). */
export type QuorumRecoveryPlan =
  | {
      readonly kind: 'force';
      readonly voters: number;
      readonly gone: readonly GoneVoter[];
      /** Every remaining voter (this one included) with its raft index, newest first: this member is first. */
      readonly compared: readonly RaftPosition[];
    }
  /**
   * This member's data is set aside and the group restores its newest backup, as after a total loss: a lone
   * voter behind that backup (forcing would throw away what the backup holds), or a learner once every voter
   * is gone for good (etcd cannot force a cluster from a learner: it panics, "removed all voters").
   */
  | {
      readonly kind: 'restore-instead';
      readonly gone: readonly GoneVoter[];
      readonly backupKey: string;
      readonly backupRevision: string;
      readonly ownRevision: string | undefined;
      readonly fromLearner: boolean;
    }
  | {
      readonly kind: 'decline';
      readonly reason: QuorumRecoveryDecline;
      readonly gone?: readonly GoneVoter[];
      /** Voters that are not gone, with what EC2 says of their instance. */
      readonly remaining?: ReadonlyArray<{ readonly memberId: string; readonly name: string; readonly why: string }>;
      /** Remaining voters (or gone ones, for gone-member-answers) that bear on the reason. */
      readonly members?: readonly string[];
      readonly compared?: readonly RaftPosition[];
    };

export interface QuorumLossInput {
  /** How long this member's own etcd has had no quorum without interruption; undefined while it has one. */
  readonly lostForMs: number | undefined;
  readonly graceMs: number;
  /** This member's Status, from its own client URL. */
  readonly self: AnsweredStatus;
  /** The membership as this member knows it locally (serializable MemberList). */
  readonly members: readonly Member[];
  /** EC2's facts by instance ID for the voters' names (absent: EC2 does not know the instance). */
  readonly facts: ReadonlyMap<string, InstanceFact>;
  /** Status answers by member ID, from each member's own client URL; a member that did not answer is absent. */
  readonly statuses: ReadonlyMap<string, AnsweredStatus>;
  /**
   * Other instances whose agent says, recently, that its etcd serves this cluster with quorum (their S3
   * registrations). This member's own view may be stale (a partition cut it off while the others replaced
   * their members): any such instance means the cluster lives on without it.
   */
  readonly servingElsewhere: readonly string[];
  /** The group's newest valid backup (its cluster and the revision before it was taken), if any. */
  readonly newestBackup: { readonly key: string; readonly clusterId: string; readonly revision: string } | undefined;
}

/** True once quorum has been missing for the whole grace period. */
export function graceElapsed(lostForMs: number | undefined, graceMs: number): boolean {
  return lostForMs !== undefined && lostForMs >= graceMs;
}

/** Whether a voter's instance is gone for good, from EC2's facts. Pure. */
export function voterFate(member: Member, facts: ReadonlyMap<string, InstanceFact>): VoterFate {
  if (!INSTANCE_ID.test(member.name)) return { gone: false, why: 'not-an-instance-name' };
  const fact = facts.get(member.name);
  if (fact === undefined) return { gone: true, why: 'unknown-to-ec2' };
  if (GONE_FOR_GOOD.has(fact.state)) return { gone: true, why: fact.state as 'terminated' | 'shutting-down' };
  return { gone: false, why: `instance-${fact.state}` };
}

/** Newest raft log first; equal indexes: lowest member ID first (IDs are uint64, compared as numbers). */
function newestFirst(a: RaftPosition, b: RaftPosition): number {
  const byIndex = BigInt(b.raftIndex) - BigInt(a.raftIndex);
  if (byIndex !== 0n) return byIndex > 0n ? 1 : -1;
  const byId = BigInt(a.memberId) - BigInt(b.memberId);
  return byId === 0n ? 0 : byId > 0n ? 1 : -1;
}

/**
 * Whether this surviving member should restart its etcd with `--force-new-cluster` after losing a majority
 * of the voters for good. Pure; every branch is table-tested. It forces only when all of these hold:
 *
 * 1. its own etcd has had no quorum for the whole grace period;
 * 2. no other instance's agent says, recently, that it serves this cluster with quorum (this member's view
 *    may be stale: cut off by a partition, it still lists members the live cluster has since replaced);
 * 3. the voters whose instances EC2 reports terminated, shutting down or unknown are so many that the
 *    others can never form a quorum again (a stopped, running or unreachable instance may come back with
 *    newer data, so it is never counted as gone: that would be a split brain);
 * 4. every other remaining voter answers Status in the same cluster, and this member holds the highest raft
 *    index among them (equal: the lowest member ID), so exactly one survivor acts, the one with the newest data.
 *
 * Learners never count for quorum and never force (etcd panics forcing a cluster from a learner). When every
 * voter is gone for good (the last voter died while its replacements were still catching up), each learner
 * sets its data aside so the group restores its newest backup (`restore-instead`), or the cluster would wait
 * forever. A lone voter behind the group's newest backup of this cluster, with no learner left, restores that
 * backup instead of forcing too. This member's own instance must be one EC2 describes as running:
 * an EC2 view that does not know the caller (wrong region, missing permission) is not trusted.
 */
export function decideQuorumRecovery(input: QuorumLossInput): QuorumRecoveryPlan {
  const { self, members, facts, statuses } = input;
  if (input.lostForMs === undefined) return { kind: 'decline', reason: 'quorum-present' };
  if (!graceElapsed(input.lostForMs, input.graceMs)) return { kind: 'decline', reason: 'grace-not-elapsed' };
  const me = members.find((m) => m.id === self.memberId);
  if (!me) return { kind: 'decline', reason: 'not-a-member' };
  if (facts.get(me.name)?.state !== 'running') return { kind: 'decline', reason: 'own-instance-not-confirmed', members: [me.name] };
  if (input.servingElsewhere.length > 0) return { kind: 'decline', reason: 'cluster-serves-elsewhere', members: [...input.servingElsewhere] };

  const voters = members.filter((m) => !m.isLearner);
  const gone: GoneVoter[] = [];
  const remaining: Array<{ memberId: string; name: string; why: string }> = [];
  for (const v of voters) {
    const fate = v.id === me.id ? ({ gone: false, why: 'self' } as const) : voterFate(v, facts);
    if (fate.gone) gone.push({ memberId: v.id, name: v.name, why: fate.why });
    else remaining.push({ memberId: v.id, name: v.name, why: fate.why });
  }
  const fromLearner = me.isLearner;
  // A voter may come back while one remains (a learner); a quorum may form again while enough remain.
  if (fromLearner ? remaining.length > 0 : remaining.length >= quorumOf(voters.length)) {
    return { kind: 'decline', reason: 'quorum-still-possible', gone, remaining };
  }

  const answers = (id: string) => {
    const s = statuses.get(id);
    return s !== undefined && s.memberId === id && s.clusterId === self.clusterId ? s : undefined;
  };
  const answeringGone = gone.filter((g) => answers(g.memberId) !== undefined);
  if (answeringGone.length > 0) {
    return { kind: 'decline', reason: 'gone-member-answers', gone, remaining, members: answeringGone.map((g) => g.name) };
  }
  const backup = input.newestBackup;
  if (fromLearner) {
    // Every voter is gone for good and nothing else serves this cluster. etcd cannot force a cluster from a
    // learner, and its data is a copy that lagged the voters: every learner sets its data aside, and the
    // group's seed election restores the newest backup (a learner's registration would otherwise hold it up).
    if (!backup) return { kind: 'decline', reason: 'learner-without-backup', gone, remaining };
    return { kind: 'restore-instead', gone, backupKey: backup.key, backupRevision: backup.revision, ownRevision: self.revision, fromLearner: true };
  }
  const silent = remaining.filter((r) => r.memberId !== me.id && answers(r.memberId) === undefined);
  if (silent.length > 0) {
    return { kind: 'decline', reason: 'remaining-voter-silent', gone, remaining, members: silent.map((s) => s.name) };
  }

  const compared = remaining
    .map((r) => ({ memberId: r.memberId, name: r.name, raftIndex: r.memberId === me.id ? self.raftIndex : (answers(r.memberId) as AnsweredStatus).raftIndex }))
    .sort(newestFirst);
  if (compared[0]?.memberId !== me.id) {
    return { kind: 'decline', reason: 'newer-data-elsewhere', gone, remaining, members: [compared[0]?.name ?? ''], compared };
  }
  // A lone voter behind the newest backup restores it instead, unless learners remain: they would answer the
  // new instances (no total loss to restore from) while never regaining a voter, and wait forever.
  const learnersRemain = members.some((m) => m.isLearner && !voterFate(m, facts).gone);
  if (
    compared.length === 1 &&
    !learnersRemain &&
    backup &&
    backup.clusterId === self.clusterId &&
    self.revision !== undefined &&
    BigInt(backup.revision) > BigInt(self.revision)
  ) {
    return { kind: 'restore-instead', gone, backupKey: backup.key, backupRevision: backup.revision, ownRevision: self.revision, fromLearner: false };
  }
  return { kind: 'force', voters: voters.length, gone, compared };
}
