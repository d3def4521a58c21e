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

/** A member the quorum side cannot reach, for long enough to call it failed. */
export interface CutOffMember {
  readonly member: Member;
  readonly instance: GroupInstance;
  /**
   * `cut-off-from-quorum`: its agent says (recently) its etcd has had no quorum for the whole grace period;
   * `agent-silent`: its agent has not written for the whole grace period either (a hung or isolated host).
   */
  readonly reason: 'cut-off-from-quorum' | 'agent-silent';
  /** Since when it has been so (epoch ms). */
  readonly since: number;
}

/**
 * A member of an in-service instance that the quorum side has not reached for longer than `graceMs` is a
 * failed member: it is removed (while it is listed, etcd's strict reconfiguration check refuses every other
 * member change: no replacement can join, no terminating member can go) and its instance is marked unhealthy,
 * so the group replaces it through the termination hook. Called only with a live cluster (reconcile reached
 * a quorum: it is on the quorum side). Never makes a partition worse: at most one instance per run, none while
 * another instance of the group is already unhealthy or terminating, and only when the members that answer
 * keep a quorum without it. Evidence is the member's own agent, in its registration (written to S3, which the
 * cut-off side may still reach): its etcd without quorum since long enough, or the agent itself silent that
 * long. A member whose agent never served is not judged here (the launch hook and instancesWithoutAgent are).
 * Pure.
 */
export function cutOffMember(input: {
  members: readonly Member[];
  instances: readonly GroupInstance[];
  healthyMemberIds: ReadonlySet<string>;
  registrations: readonly AgentRegistration[];
  now: number;
  graceMs: number;
  freshMs: number;
}): CutOffMember | undefined {
  const { members, healthyMemberIds, now } = input;
  const busy = input.instances.some((i) => i.healthStatus !== 'Healthy' || i.lifecycleState.startsWith('Terminating'));
  if (busy) return undefined;
  const byInstance = new Map(input.registrations.map((r) => [r.instanceId, r]));
  const voters = members.filter((m) => !m.isLearner);
  const candidates: CutOffMember[] = [];
  for (const instance of activePeers(input.instances)) {
    if (instance.lifecycleState !== 'InService') continue;
    const hit = memberOfInstance(members, instance);
    if (!hit || healthyMemberIds.has(hit.member.id)) continue;
    const r = byInstance.get(instance.instanceId);
    if (r?.serving?.memberId !== hit.member.id) continue;
    const fresh = now - r.at <= input.freshMs;
    if (fresh && !r.serving.quorum && now - r.serving.since >= input.graceMs) {
      candidates.push({ member: hit.member, instance, reason: 'cut-off-from-quorum', since: r.serving.since });
    } else if (!fresh && now - r.at >= input.graceMs) {
      candidates.push({ member: hit.member, instance, reason: 'agent-silent', since: r.at });
    }
  }
  candidates.sort((a, b) => a.since - b.since);
  for (const c of candidates) {
    if (c.member.isLearner) return c;
    const after = voters.filter((v) => v.id !== c.member.id);
    if (after.filter((v) => healthyMemberIds.has(v.id)).length >= quorumOf(after.length)) return c;
  }
  return undefined;
}
