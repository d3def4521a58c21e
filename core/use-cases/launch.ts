import { healthAction, type HealthVerdict } from '../domain/health.js';
import { describeError } from '../errors.js';
import type { Log } from '../logger.js';
import type { EtcdCluster, EtcdLocalView, InstanceLifecycle, StackSignals } from '../ports.js';

export interface LaunchDeps {
  readonly instanceId: string;
  /** This instance's etcd client URL. */
  readonly selfUrl: string;
  /** EC2's launch time of this instance: the launch deadline counts from it, across agent restarts. */
  readonly launchedAt: number | undefined;
  readonly lifecycle: InstanceLifecycle;
  readonly signals: StackSignals;
  readonly openLocal: () => EtcdCluster & EtcdLocalView;
  /** Removes this instance's own member, if it has one, before a launch is abandoned (best effort). */
  readonly removeOwnMember: () => Promise<void>;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly log: Log;
  readonly pollMs: number;
  /** How often the launching hook's heartbeat is recorded while the member catches up. */
  readonly heartbeatMs: number;
  /** How long after its launch an instance may take to become a voting member before its launch is abandoned. */
  readonly timeoutMs: number;
  readonly stopped: () => boolean;
}

export type LaunchOutcome =
  | { readonly kind: 'continued'; readonly afterMs: number }
  | { readonly kind: 'abandoned'; readonly reason: string }
  | { readonly kind: 'voting'; readonly state: string | undefined }
  | { readonly kind: 'gave-up-waiting'; readonly state: string | undefined }
  | { readonly kind: 'stopped' };

/** True when this member votes and its cluster has a quorum (a linearizable read through it succeeds). */
async function votingWithQuorum(deps: LaunchDeps): Promise<boolean> {
  const etcd = deps.openLocal();
  try {
    const status = await etcd.status(deps.selfUrl);
    return !status.isLearner && status.leaderId !== '0' && (await etcd.hasQuorum());
  } catch {
    return false;
  } finally {
    etcd.close();
  }
}

/**
 * Tells Auto Scaling (and a CloudFormation rolling update) that this instance is ready, and only then: once its
 * member votes and the cluster has quorum. Until then the instance stays in Pending:Wait (the launching
 * lifecycle hook, heartbeats keep it there), so a rollout never terminates an old member before its successor
 * is one; after `timeoutMs` from the instance's launch the launch is abandoned (Auto Scaling replaces the
 * instance) and the rollout is signalled a failure, which stops it with the cluster intact.
 *
 * 1. read the own lifecycle state 2. until voting: heartbeat the hook, check the deadline 3. CONTINUE and
 * signal SUCCESS (or ABANDON and signal FAILURE).
 */
export async function finishLaunch(deps: LaunchDeps): Promise<LaunchOutcome> {
  const started = deps.now();
  const state = await deps.lifecycle.state(deps.instanceId);
  const launching = state === 'Pending:Wait';
  const since = deps.launchedAt ?? started;
  let beatAt = started;
  while (!deps.stopped()) {
    if (await votingWithQuorum(deps)) {
      if (launching) {
        const result = await deps.lifecycle.completeLaunch(deps.instanceId, 'CONTINUE');
        deps.log.info('launch completed: the member votes', { instanceId: deps.instanceId, result, afterMs: deps.now() - since });
      }
      await signal(deps, 'SUCCESS');
      return launching ? { kind: 'continued', afterMs: deps.now() - since } : { kind: 'voting', state };
    }
    if (deps.now() - since >= deps.timeoutMs) {
      if (!launching) return { kind: 'gave-up-waiting', state };
      const reason = `not a voting member ${Math.round(deps.timeoutMs / 1000)} s after launch`;
      await abandonLaunch(deps, reason);
      return { kind: 'abandoned', reason };
    }
    if (launching && deps.now() - beatAt >= deps.heartbeatMs) {
      beatAt = deps.now();
      await deps.lifecycle.heartbeatLaunch(deps.instanceId).catch((error: unknown) => {
        deps.log.warn('launch heartbeat failed', { error: describeError(error) });
      });
    }
    await deps.sleep(deps.pollMs);
  }
  return { kind: 'stopped' };
}

async function signal(deps: Pick<LaunchDeps, 'signals' | 'instanceId' | 'log'>, status: 'SUCCESS' | 'FAILURE'): Promise<void> {
  try {
    const result = await deps.signals.signal(deps.instanceId, status);
    deps.log.info('signalled the stack', { status, result });
  } catch (error) {
    deps.log.warn('signalling the stack failed', { status, error: describeError(error) });
  }
}

/**
 * Gives a launch up, when the instance is still in Pending:Wait: removes its own member first (a learner
 * that would otherwise stay behind), then ABANDON (Auto Scaling terminates and replaces the instance) and a
 * FAILURE signal (a rolling update stops and rolls back). Returns false when the instance was not launching.
 */
export async function abandonLaunch(
  deps: Pick<LaunchDeps, 'instanceId' | 'lifecycle' | 'signals' | 'removeOwnMember' | 'log'>,
  reason: string,
): Promise<boolean> {
  const state = await deps.lifecycle.state(deps.instanceId);
  if (state !== 'Pending:Wait') return false;
  await deps.removeOwnMember().catch((error: unknown) => deps.log.warn('could not remove the own member before abandoning', { error: describeError(error) }));
  const result = await deps.lifecycle.completeLaunch(deps.instanceId, 'ABANDON');
  deps.log.warn('launch abandoned', { instanceId: deps.instanceId, reason, result });
  await signal(deps, 'FAILURE');
  return true;
}

/**
 * Acts on the agent's verdict on its own instance: a launch in progress is abandoned, an instance in service
 * is marked unhealthy (the group replaces it through the termination hook, which removes its member), and
 * nothing is done otherwise. Every decision is logged with its reason.
 */
export async function reportHealth(
  verdict: HealthVerdict,
  deps: Pick<LaunchDeps, 'instanceId' | 'lifecycle' | 'signals' | 'removeOwnMember' | 'log'>,
): Promise<'abandoned' | 'marked-unhealthy' | 'none'> {
  if (verdict.kind === 'healthy') return 'none';
  const state = await deps.lifecycle.state(deps.instanceId);
  const action = healthAction(verdict, state);
  switch (action.kind) {
    case 'abandon-launch':
      await abandonLaunch(deps, `${verdict.reason}: ${verdict.detail}`);
      return 'abandoned';
    case 'set-unhealthy':
      await deps.lifecycle.setUnhealthy(deps.instanceId);
      deps.log.warn('marked this instance unhealthy; Auto Scaling replaces it', { instanceId: deps.instanceId, reason: verdict.reason, detail: verdict.detail });
      return 'marked-unhealthy';
    default:
      deps.log.warn('this instance cannot serve, and is not in service to be replaced', { reason: verdict.reason, detail: verdict.detail, state });
      return 'none';
  }
}
