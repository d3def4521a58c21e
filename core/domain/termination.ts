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
  | { readonly kind: 'complete'; readonly reason: 'not-a-member' };

/**
 * What to do for a terminating instance: remove its member (found by name, else by peer URL on its IP, for
 * a member added but never started), or only let the termination proceed. The last voting member is never
 * removed (etcd cannot remove it, and nothing would be left to serve); the caller backs it up first. Pure.
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
    return { kind: 'keep-last-voter', memberId: hit.member.id, reason: 'last-voting-member' };
  }
  return { kind: 'remove', memberId: hit.member.id, memberName: hit.member.name, matchedBy: hit.matchedBy };
}
