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
  /**
   * Removes this instance's own member when it is a learner, before a launch is abandoned; says what it found:
   * a voter is never removed (promotion may have landed meanwhile), and its launch is not abandoned.
   */
  readonly removeOwnMember: () => Promise<'removed-learner' | 'voter' | 'none'>;
  /**
   * Whether the other members hold a quorum of the voters without this one (healthy voters other than this
   * member ≥ a majority of all voters): only then can its replacement happen without the cluster losing quorum.
   */
  readonly othersHoldQuorum: () => Promise<boolean>;
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
  /** The launching action had ended meanwhile (its heartbeat timeout): the instance is going; FAILURE signalled. */
  | { readonly kind: 'lost-launch'; readonly afterMs: number }
  | { readonly kind: 'abandoned'; readonly reason: string }
  | { readonly kind: 'not-launching'; readonly state: string | undefined }
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
 * instance) and the rollout is signalled a failure, which stops it with the cluster intact. Only an instance
 * found launching signals: an old member restarting its agent during a rollout must not count as a successor.
 * Every AWS call that fails is retried at the next poll; the hook is heartbeated at once and then every
 * `heartbeatMs` (the installation may have used much of its timeout).
 *
 * 1. read the own lifecycle state (again at every heartbeat) 2. until voting: heartbeat the hook, check the
 * deadline 3. CONTINUE, and SUCCESS only when the action was still there (else FAILURE: it timed out and the
 * instance goes) 4. or, past the deadline and not a voter: remove the own learner, ABANDON, FAILURE.
 */
export async function finishLaunch(deps: LaunchDeps): Promise<LaunchOutcome> {
  const started = deps.now();
  const since = deps.launchedAt ?? started;
  let state: string | undefined;
  let readAt = Number.NEGATIVE_INFINITY;
  let beatAt = Number.NEGATIVE_INFINITY;
  while (!deps.stopped()) {
    try {
      if (deps.now() - readAt >= deps.heartbeatMs) {
        state = await deps.lifecycle.state(deps.instanceId);
        readAt = deps.now();
      }
      if (state !== 'Pending:Wait') return { kind: 'not-launching', state };
      if (await votingWithQuorum(deps)) {
        const result = await deps.lifecycle.completeLaunch(deps.instanceId, 'CONTINUE');
        const afterMs = deps.now() - since;
        if (result === 'completed') {
          deps.log.info('launch completed: the member votes', { instanceId: deps.instanceId, afterMs });
          await signal(deps, 'SUCCESS');
          return { kind: 'continued', afterMs };
        }
        deps.log.warn('the member votes, but the launching action had already ended (timed out): the instance is going', { instanceId: deps.instanceId, afterMs });
        await signal(deps, 'FAILURE');
        return { kind: 'lost-launch', afterMs };
      }
      if (deps.now() - since >= deps.timeoutMs) {
        const reason = `not a voting member ${Math.round(deps.timeoutMs / 1000)} s after launch`;
        if (await abandonLaunch(deps, reason)) return { kind: 'abandoned', reason };
      }
      if (deps.now() - beatAt >= deps.heartbeatMs) {
        await deps.lifecycle.heartbeatLaunch(deps.instanceId);
        beatAt = deps.now();
      }
    } catch (error) {
      deps.log.warn('launch completion step failed; retrying', { error: describeError(error) });
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
 * Gives a launch up, when the instance is still in Pending:Wait: removes its own learner first (it would stay
 * behind), then ABANDON (Auto Scaling terminates and replaces the instance) and a FAILURE signal (a rolling
 * update stops and rolls back). A member that votes by now (its promotion landed meanwhile) is never
 * abandoned: that would take a voter away. Returns false when nothing was abandoned.
 */
export async function abandonLaunch(
  deps: Pick<LaunchDeps, 'instanceId' | 'lifecycle' | 'signals' | 'removeOwnMember' | 'log'>,
  reason: string,
): Promise<boolean> {
  const state = await deps.lifecycle.state(deps.instanceId);
  if (state !== 'Pending:Wait') return false;
  const own = await deps.removeOwnMember();
  if (own === 'voter') {
    deps.log.warn('not abandoning the launch: the member votes by now', { instanceId: deps.instanceId, reason });
    return false;
  }
  const result = await deps.lifecycle.completeLaunch(deps.instanceId, 'ABANDON');
  deps.log.warn('launch abandoned', { instanceId: deps.instanceId, reason, result });
  await signal(deps, 'FAILURE');
  return true;
}

/**
 * Acts on the agent's verdict on its own instance: a launch in progress is abandoned, an instance in service
 * is marked unhealthy (the group replaces it through the termination hook, which removes its member) when the
 * others hold a quorum without it, and nothing is done otherwise. Every decision is logged with its reason.
 */
export async function reportHealth(
  verdict: HealthVerdict,
  deps: Pick<LaunchDeps, 'instanceId' | 'lifecycle' | 'signals' | 'removeOwnMember' | 'othersHoldQuorum' | 'log'>,
): Promise<'abandoned' | 'marked-unhealthy' | 'none'> {
  if (verdict.kind === 'healthy') return 'none';
  const state = await deps.lifecycle.state(deps.instanceId);
  const action = healthAction(verdict, state);
  switch (action.kind) {
    case 'abandon-launch':
      await abandonLaunch(deps, `${verdict.reason}: ${verdict.detail}`);
      return 'abandoned';
    case 'set-unhealthy':
      // A cause shared by every member (a full disk, a bad setting) must not get them all replaced at once:
      // only a member the others can do without is handed to Auto Scaling; the others keep retrying.
      if (!(await deps.othersHoldQuorum())) {
        deps.log.warn('not marking this instance unhealthy: the other members hold no quorum without it', { reason: verdict.reason, detail: verdict.detail });
        return 'none';
      }
      await deps.lifecycle.setUnhealthy(deps.instanceId);
      deps.log.warn('marked this instance unhealthy; Auto Scaling replaces it', { instanceId: deps.instanceId, reason: verdict.reason, detail: verdict.detail });
      return 'marked-unhealthy';
    default:
      deps.log.warn('this instance cannot serve, and is not in service to be replaced', { reason: verdict.reason, detail: verdict.detail, state });
      return 'none';
  }
}
