import type { Probe, Self } from './bootstrap.js';
import { memberOfInstance, quorumOf } from './members.js';

/**
 * The agent's verdict on its own instance, for Auto Scaling: unhealthy only for what a new instance would
 * fix. A cluster without quorum, a NOSPACE alarm, a version the launch template got wrong or a peer that is
 * down are never this instance's fault, and replacing it would only throw its data away.
 */

/** One start of etcd by an agent, as the agent remembers it across its own restarts (systemd restarts it). */
export interface EtcdRun {
  /** Epoch ms when the agent started etcd. */
  readonly startedAt: number;
  /** Epoch ms when etcd first answered Status on its own client URL; absent when it never did. */
  readonly servedAt?: number | undefined;
  /** Epoch ms when it exited, with the code (or signal); absent while it runs. */
  readonly exitedAt?: number | undefined;
  readonly exit?: number | string | undefined;
  /** True when the agent stopped it on purpose (a forwarded SIGTERM, a forced-recovery restart). */
  readonly stopped?: boolean | undefined;
  /** True when etcd started on an empty data dir (a join, or a new empty cluster): nothing of its own to keep. */
  readonly fromScratch?: boolean | undefined;
}

/**
 * A data dir with a member dir but no WAL, left by the agent's own last start, which began on an empty data
 * dir and never served: etcd failed during its first bootstrap (a peer it asked for the membership had a stale
 * view, a crash), before it wrote anything of value. Setting it aside (never deleting it) and starting over is
 * safe; any other WAL-less data dir is a damaged one, for an operator. Pure.
 */
export function interruptedFirstStart(local: { readonly kind: string; readonly noWal?: true }, runs: readonly EtcdRun[]): boolean {
  const last = runs.at(-1);
  return local.kind === 'unreadable' && local.noWal === true && last !== undefined && last.fromScratch === true && last.servedAt === undefined;
}

/** Why this instance cannot become or stay a member, in a way a new instance would fix. */
export type UnhealthyReason = 'etcd-crash-loop' | 'local-data-unreadable' | 'data-dir-unusable' | 'etcd-missing';

export type HealthVerdict =
  | { readonly kind: 'healthy' }
  | { readonly kind: 'unhealthy'; readonly reason: UnhealthyReason; readonly detail: string };

export interface CrashLoopPolicy {
  /** This many failed runs in a row make a crash loop. */
  readonly failedRuns: number;
  /** A run that exits (not stopped on purpose) within this long after its start failed, even if it served. */
  readonly failFastMs: number;
}

export const DEFAULT_CRASH_LOOP: CrashLoopPolicy = { failedRuns: 5, failFastMs: 60_000 };

/** A run that ended on its own with a failure: never served, or died within failFastMs of its start. Pure. */
export function failedRun(run: EtcdRun, policy: CrashLoopPolicy): boolean {
  if (run.exitedAt === undefined || run.stopped === true || run.exit === 0) return false;
  return run.servedAt === undefined || run.exitedAt - run.startedAt < policy.failFastMs;
}

/**
 * Whether etcd keeps failing on this instance: the last `failedRuns` runs (oldest first in `runs`) all failed.
 * A disk that fails under etcd, a data dir etcd cannot open, a binary that crashes: a new instance, with a new
 * volume, is the cure; the member is removed through the termination hook and the replacement joins. Pure.
 */
export function crashLoopVerdict(runs: readonly EtcdRun[], policy: CrashLoopPolicy = DEFAULT_CRASH_LOOP): HealthVerdict {
  const recent = runs.slice(-policy.failedRuns);
  if (recent.length < policy.failedRuns || !recent.every((r) => failedRun(r, policy))) return { kind: 'healthy' };
  const exits = recent.map((r) => String(r.exit)).join(', ');
  return {
    kind: 'unhealthy',
    reason: 'etcd-crash-loop',
    detail: `etcd failed ${policy.failedRuns} starts in a row (exits ${exits}), each without serving or within ${policy.failFastMs / 1000} s`,
  };
}

/** What Auto Scaling is told, by the instance's lifecycle state: abandon a launch in progress, else mark it unhealthy. Pure. */
export type HealthAction =
  | { readonly kind: 'abandon-launch' }
  | { readonly kind: 'set-unhealthy' }
  | { readonly kind: 'none'; readonly reason: 'healthy' | 'not-in-service' };

export function healthAction(verdict: HealthVerdict, lifecycleState: string | undefined): HealthAction {
  if (verdict.kind === 'healthy') return { kind: 'none', reason: 'healthy' };
  if (lifecycleState === 'Pending:Wait') return { kind: 'abandon-launch' };
  if (lifecycleState === 'InService') return { kind: 'set-unhealthy' };
  return { kind: 'none', reason: 'not-in-service' };
}

/**
 * Whether the live cluster's other members hold a quorum of all its voters without this instance's member:
 * the healthy voters that are not this instance's number at least a majority of the voters. Only then can the
 * instance be replaced (its member removed first) without the cluster losing quorum. Pure.
 */
export function othersHoldQuorum(probe: Extract<Probe, { kind: 'live' }>, self: Self): boolean {
  const own = memberOfInstance(probe.members, self)?.member.id;
  const voters = probe.members.filter((m) => !m.isLearner);
  const healthyOthers = voters.filter((m) => m.id !== own && probe.healthyMemberIds.includes(m.id)).length;
  return healthyOthers >= quorumOf(voters.length);
}
