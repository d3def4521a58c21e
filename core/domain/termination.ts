import type { TerminationNotice } from './lifecycle-events.js';
import { memberOfInstance, votingMembers, type Member } from './members.js';

export type TerminationPlan =
  | {
      readonly kind: 'remove';
      readonly memberId: string;
      readonly memberName: string;
      readonly matchedBy: 'name' | 'peer-ip';
    }
  | { readonly kind: 'keep-last-voter'; readonly memberId: string; readonly reason: 'last-voting-member' }
  /**
   * The last voter, while learners exist: once it goes, no leader is left to promote them, and they wait
   * forever. One of them must vote first; then the member can be removed like any other.
   */
  | { readonly kind: 'promote-first'; readonly memberId: string; readonly learnerIds: readonly string[]; readonly reason: 'last-voter-with-learners' }
  | { readonly kind: 'complete'; readonly reason: 'not-a-member' | 'silent-without-quorum' };

/**
 * What to do for a terminating instance: remove its member (found by name, else by peer URL on its IP, for
 * a member added but never started), or only let the termination proceed. The last voting member is never
 * removed (etcd cannot remove it, and nothing would be left to serve): while learners exist, one of them is
 * promoted first (the instance waits meanwhile); alone, the caller backs it up first. Pure.
 */
export function planTermination(
  notice: TerminationNotice,
  members: readonly Member[],
  privateIp: string | undefined,
): TerminationPlan {
  const hit = memberOfInstance(members, { instanceId: notice.instanceId, privateIp });
  if (!hit) return { kind: 'complete', reason: 'not-a-member' };
  const voters = votingMembers(members);
  if (!hit.member.isLearner && voters.length === 1) {
    // A learner whose etcd never started (no name yet) can never catch up: waiting for it would hold the
    // last voter for nothing.
    const learnerIds = members.filter((m) => m.isLearner && m.name !== '').map((m) => m.id);
    if (learnerIds.length > 0) return { kind: 'promote-first', memberId: hit.member.id, learnerIds, reason: 'last-voter-with-learners' };
    return { kind: 'keep-last-voter', memberId: hit.member.id, reason: 'last-voting-member' };
  }
  return { kind: 'remove', memberId: hit.member.id, memberName: hit.member.name, matchedBy: hit.matchedBy };
}

/** What one member's Status said, as far as a leadership handoff needs it. */
export interface VoterStatus {
  readonly memberId: string;
  readonly leaderId: string;
  readonly raftIndex: string;
  readonly isLearner: boolean;
}

export type Handoff =
  | { readonly kind: 'not-leader' }
  | { readonly kind: 'move'; readonly targetId: string }
  | { readonly kind: 'no-target' };

/**
 * Whether to move leadership off a member about to be removed, and to whom. Removing the leader makes the
 * others wait an election timeout before anyone serves writes; handing leadership over first makes that a
 * single round trip. The member leads when any answering member says so; the new leader is the answering
 * voter with the newest raft log (equal: the lowest member ID), so it needs no catching up. Pure.
 */
export function leadershipHandoff(memberId: string, members: readonly Member[], statuses: readonly VoterStatus[]): Handoff {
  if (!statuses.some((s) => s.leaderId === memberId)) return { kind: 'not-leader' };
  const voters = new Set(votingMembers(members).map((m) => m.id));
  const candidates = statuses
    .filter((s) => s.memberId !== memberId && !s.isLearner && voters.has(s.memberId))
    .sort((a, b) => {
      const byIndex = BigInt(b.raftIndex) - BigInt(a.raftIndex);
      if (byIndex !== 0n) return byIndex > 0n ? 1 : -1;
      const byId = BigInt(a.memberId) - BigInt(b.memberId);
      return byId === 0n ? 0 : byId > 0n ? 1 : -1;
    });
  const target = candidates[0];
  return target ? { kind: 'move', targetId: target.memberId } : { kind: 'no-target' };
}

/** What a termination does when no member answers with quorum, so its member cannot be removed. */
export type NoQuorumPlan =
  | { readonly kind: 'complete'; readonly reason: 'silent-without-quorum' }
  | { readonly kind: 'hold'; readonly reason: 'member-answers-without-quorum' };

/**
 * Whether a failed call to a member still shows that something serves there: a TLS handshake or an
 * authentication refusal (a certificate expired, of another CA, or a scheme that does not match) is an answer,
 * not silence. Pure.
 */
export function refusedButAnswered(detail: string): boolean {
  return /certificate|x509|handshake|\btls\b|\bssl\b|wrong version number|unauthenticated|permission denied|user name not found|invalid auth/i.test(detail);
}

/**
 * Without quorum the member cannot be removed. Holding the instance (heartbeats, retries) is worth it only
 * while its etcd still answers: its data may be what a quorum (or a forced recovery) needs. A member whose
 * etcd is silent too (a dead instance, the usual reason Auto Scaling replaces one) gains nothing by waiting,
 * and holding it would keep its replacement's seed election and the cluster's recovery waiting for up to the
 * hook's retries (about 50 minutes): it goes at once. Pure.
 */
export function planWithoutQuorum(own: 'answers' | 'silent'): NoQuorumPlan {
  return own === 'answers' ? { kind: 'hold', reason: 'member-answers-without-quorum' } : { kind: 'complete', reason: 'silent-without-quorum' };
}
