import { activePeers, type GroupInstance } from './instances.js';
import { memberOfInstance, type Member } from './members.js';

/** How the etcd member list lines up with the Auto Scaling group's instances. */
export interface MembershipView {
  /** Active instances paired with their member. */
  readonly matched: ReadonlyArray<{ instanceId: string; memberId: string; matchedBy: 'name' | 'peer-ip' }>;
  /** Members whose instance is not an active instance of the group (terminated, detached, or unknown). */
  readonly orphans: readonly Member[];
  /** Active instances that have no member yet (booting, or lost their member). */
  readonly withoutMember: readonly string[];
  readonly voting: number;
  readonly learners: number;
}

/** Pairs members with the group's active instances, by member name, else by peer URL IP. Pure. */
export function compareMembership(members: readonly Member[], instances: readonly GroupInstance[]): MembershipView {
  const matched: Array<{ instanceId: string; memberId: string; matchedBy: 'name' | 'peer-ip' }> = [];
  const withoutMember: string[] = [];
  const claimed = new Set<string>();
  for (const instance of activePeers(instances)) {
    const hit = memberOfInstance(members.filter((m) => !claimed.has(m.id)), instance);
    if (hit) {
      claimed.add(hit.member.id);
      matched.push({ instanceId: instance.instanceId, memberId: hit.member.id, matchedBy: hit.matchedBy });
    } else {
      withoutMember.push(instance.instanceId);
    }
  }
  return {
    matched,
    orphans: members.filter((m) => !claimed.has(m.id)),
    withoutMember,
    voting: members.filter((m) => !m.isLearner).length,
    learners: members.filter((m) => m.isLearner).length,
  };
}
