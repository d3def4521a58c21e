/** An etcd cluster member as the v3 API reports it. `id` is the decimal form of etcd's uint64 member ID. */
export interface Member {
  readonly id: string;
  /** Empty while a member has been added but has not started yet. */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

/** etcdctl prints member IDs in hex; logs use the same form so operators can match them. */
export function hexMemberId(id: string): string {
  return BigInt(id).toString(16);
}

/** Host part of an etcd URL (`http://10.0.1.7:2380` → `10.0.1.7`), or undefined when it is not a URL. */
export function urlHost(url: string): string | undefined {
  try {
    return new URL(url).hostname;
  } catch {
    return undefined;
  }
}

/** Votes needed for raft to commit: a strict majority of voting members. */
export function quorumOf(votingMembers: number): number {
  return Math.floor(votingMembers / 2) + 1;
}

/** How many voting members can fail while the cluster still has quorum. */
export function faultTolerance(votingMembers: number): number {
  return votingMembers === 0 ? 0 : votingMembers - quorumOf(votingMembers);
}

export function votingMembers(members: readonly Member[]): Member[] {
  return members.filter((m) => !m.isLearner);
}

/**
 * The member that belongs to an instance: named after it, or (for a member that was added but never
 * started, whose name is still empty) whose peer URL points at the instance's private IP.
 */
export function memberOfInstance(
  members: readonly Member[],
  instance: { readonly instanceId: string; readonly privateIp?: string | undefined },
): { member: Member; matchedBy: 'name' | 'peer-ip' } | undefined {
  const byName = members.find((m) => m.name === instance.instanceId);
  if (byName) return { member: byName, matchedBy: 'name' };
  const ip = instance.privateIp;
  if (ip === undefined) return undefined;
  const byIp = members.find((m) => m.peerUrls.some((u) => urlHost(u) === ip));
  return byIp ? { member: byIp, matchedBy: 'peer-ip' } : undefined;
}
