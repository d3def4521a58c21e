import type { AgentRegistration } from './election.js';
import { activePeers, type GroupInstance } from './instances.js';
import { memberOfInstance, quorumOf, type Member } from './members.js';

/** What EC2 says about an instance a member is named after. Absent: EC2 no longer knows it (long gone). */
export interface InstanceFact {
  readonly state: string;
  /** When it entered that state (epoch ms), from EC2's StateTransitionReason; undefined when unknown. */
  readonly since: number | undefined;
}

export type KeptReason = 'member-answers' | 'within-grace-period' | 'removal-would-break-quorum' | 'instance-running-outside-group' | 'one-removal-per-run';

export interface ReconcilePlan {
  /** At most one member to remove this run. */
  readonly remove: { readonly member: Member; readonly reason: 'instance-gone' | 'unstarted-learner-without-instance' } | undefined;
  /** Learners whose instance is active: promoted if caught up (their agent may have crashed before it could). */
  readonly promote: readonly Member[];
  readonly kept: ReadonlyArray<{ readonly member: Member; readonly reason: KeptReason }>;
}

const GONE = new Set(['shutting-down', 'terminated', 'stopping', 'stopped']);

/** "User initiated (2026-11-26 12:00:00 GMT)" → epoch ms; undefined when there is no such time. Pure. */
export function parseTransitionTime(reason: string | undefined): number | undefined {
  const m = /\((\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)/.exec(reason ?? '');
  return m ? Date.parse(`${m[1] ?? ''}T${m[2] ?? ''}Z`) : undefined;
}

/**
 * The safety net's decision: which orphan member to remove (one per run, oldest reason first, only when
 * it does not answer, its instance has been gone longer than the grace period and the healthy voters keep a
 * quorum without it) and which learners of active instances to promote. Pure.
 */
export function planReconcile(input: {
  members: readonly Member[];
  instances: readonly GroupInstance[];
  healthyMemberIds: ReadonlySet<string>;
  facts: ReadonlyMap<string, InstanceFact>;
  now: number;
  graceMs: number;
}): ReconcilePlan {
  const { members, healthyMemberIds } = input;
  const active = activePeers(input.instances);
  const owned = new Map<string, GroupInstance>();
  for (const instance of active) {
    const hit = memberOfInstance(members, instance);
    if (hit) owned.set(hit.member.id, instance);
  }
  const promote = members.filter((m) => m.isLearner && owned.has(m.id));
  const kept: Array<{ member: Member; reason: KeptReason }> = [];
  const candidates: Array<{ member: Member; reason: 'instance-gone' | 'unstarted-learner-without-instance' }> = [];
  for (const m of members) {
    if (owned.has(m.id)) continue;
    if (m.name === '') {
      candidates.push({ member: m, reason: 'unstarted-learner-without-instance' });
      continue;
    }
    // A member that answers runs somewhere, whatever EC2 says of the instance it is named after.
    if (healthyMemberIds.has(m.id)) {
      kept.push({ member: m, reason: 'member-answers' });
      continue;
    }
    const fact = input.facts.get(m.name);
    if (fact && !GONE.has(fact.state)) {
      kept.push({ member: m, reason: 'instance-running-outside-group' });
      continue;
    }
    const since = fact ? fact.since : Number.NEGATIVE_INFINITY;
    if (since === undefined || input.now - since < input.graceMs) {
      kept.push({ member: m, reason: 'within-grace-period' });
      continue;
    }
    candidates.push({ member: m, reason: 'instance-gone' });
  }
  let remove: ReconcilePlan['remove'];
  const voting = members.filter((m) => !m.isLearner);
  for (const c of candidates) {
    if (remove) {
      kept.push({ member: c.member, reason: 'one-removal-per-run' });
      continue;
    }
    const after = voting.filter((v) => v.id !== c.member.id);
    const healthyAfter = after.filter((v) => healthyMemberIds.has(v.id)).length;
    if (c.member.isLearner || healthyAfter >= quorumOf(after.length)) remove = c;
    else kept.push({ member: c.member, reason: 'removal-would-break-quorum' });
  }
  return { remove, promote, kept };
}

/**
 * Instances whose agent never started: in the group (launching or in service) for longer than the grace
 * period since their launch, with no registration at all, and no member of theirs in the cluster. The agent
 * registers before it creates any etcd data and before it joins, so such an instance holds no data and no
 * member: marking it unhealthy (the group replaces it) costs nothing, and ends a seed election that waits for
 * its registration. At most one per run, the longest-running first. Pure.
 */
export function instancesWithoutAgent(input: {
  instances: readonly GroupInstance[];
  registrations: readonly AgentRegistration[];
  members: readonly Member[] | undefined;
  now: number;
  graceMs: number;
}): GroupInstance[] {
  const registered = new Set(input.registrations.map((r) => r.instanceId));
  return activePeers(input.instances)
    .filter((i) => i.launchedAt !== undefined && input.now - i.launchedAt > input.graceMs)
    .filter((i) => !registered.has(i.instanceId))
    .filter((i) => input.members === undefined || memberOfInstance(input.members, i) === undefined)
    .sort((a, b) => (a.launchedAt ?? 0) - (b.launchedAt ?? 0))
    .slice(0, 1);
}
