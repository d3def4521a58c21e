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

/**
 * The client URLs a client of `scheme` reaches a member at: those it advertises with that scheme, or else
 * its advertised addresses with that scheme. While a stack moves to TLS, members of three launches live side
 * by side: plaintext ones, migrating ones serving both schemes on one port, and TLS ones; every caller
 * speaks one scheme, and one that a member does not serve gets a refusal (an answer, not silence). Pure.
 */
export function clientUrlsOfScheme(advertised: readonly string[], scheme: 'http' | 'https'): string[] {
  const own = advertised.filter((u) => u.startsWith(`${scheme}://`));
  if (own.length > 0) return own;
  return [...new Set(advertised.map((u) => u.replace(/^[a-z]+:\/\//i, `${scheme}://`)))];
}

/**
 * The members not yet launched with TLS (`on`): any peer URL of theirs is plaintext. etcd authentication
 * waits for none to be left, since the agents of plaintext and migrating members talk to etcd without a
 * certificate, and etcd would refuse them everything once authentication is on. Pure.
 */
export function membersWithoutTls(members: readonly Member[]): Member[] {
  return members.filter((m) => m.peerUrls.length === 0 || m.peerUrls.some((u) => !u.startsWith('https://')));
}
