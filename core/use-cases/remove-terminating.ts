import { activePeers, clientUrls, type UrlScheme } from '../domain/instances.js';
import type { TerminationNotice } from '../domain/lifecycle-events.js';
import { hexMemberId, type Member } from '../domain/members.js';
import { leadershipHandoff, planTermination, planWithoutQuorum, refusedButAnswered, type TerminationPlan } from '../domain/termination.js';
import { EtcdBackoffError, EtcdUnavailableError, MembershipChangeTooSoonError, describeError } from '../errors.js';
import type { Log } from '../logger.js';
import type { EtcdCluster, EtcdMembership, InstanceInventory, LifecycleActions } from '../ports.js';

export interface RemovalDeps {
  readonly groupName: string;
  readonly inventory: InstanceInventory;
  readonly openCluster: (endpoints: readonly string[]) => EtcdCluster & EtcdMembership;
  readonly lifecycle: LifecycleActions;
  readonly clientPort: number;
  /** `https` when etcd runs with TLS. */
  readonly scheme?: UrlScheme | undefined;
  /** Explicit etcd client URLs (ETCD_ENDPOINTS); otherwise the group's active instances. */
  readonly endpoints: readonly string[] | undefined;
  /**
   * Starts the final backup before the last voting member goes, elsewhere (the backup function, which may
   * take up to 15 minutes): it keeps the instance waiting with heartbeats and completes the action itself.
   * Absent: the last member goes without one.
   */
  readonly finalBackup: ((notice: TerminationNotice) => Promise<void>) | undefined;
  readonly log: Log;
  readonly sleep: (ms: number) => Promise<void>;
  /**
   * What must be ready before the first etcd call (under TLS, the function's client certificate from the
   * issuer). Awaited after the heartbeat: when it fails, the instance still waits for the retry.
   */
  readonly beforeEtcd?: (() => Promise<void>) | undefined;
  /**
   * How often, and how far apart, a removal that etcd refused as too soon (strict reconfig check) is tried
   * again within the same invocation, instead of waiting for the queue's redelivery.
   */
  readonly tooSoonRetry?: { readonly attempts: number; readonly delayMs: number };
  /** How often, and how far apart, the last voter's learners are offered promotion within one invocation. */
  readonly promoteRetry?: { readonly attempts: number; readonly delayMs: number };
  /**
   * This is the queue's last delivery of the notice (the next failure moves it to the dead-letter queue): a
   * last voter still waiting for a learner is backed up and let go instead of failing once more.
   */
  readonly lastDelivery?: boolean;
}

export type RemovalOutcome =
  | { readonly kind: 'ignored'; readonly reason: 'other-group' }
  | {
      readonly kind: 'completed';
      readonly plan: TerminationPlan;
      readonly removal: 'removed' | 'not-found' | 'none';
      readonly lifecycle: 'completed' | 'already-completed';
    }
  /** The last voting member: its final backup was handed over, which completes the action when done. */
  | { readonly kind: 'final-backup-started'; readonly plan: TerminationPlan };

/**
 * Removes a terminating instance's etcd member, then lets the termination proceed. Safe to repeat: a
 * member already gone is "not-found", a lifecycle action already completed is "already-completed".
 *
 * 1. describe the group (the terminating instance's IP; the endpoints of the others) 2. list members through
 * a member other than the terminating one 3. decide 4. hand leadership over if the member leads, then remove
 * it (or, for the last voter, back it up) 5. complete the lifecycle action. On failure: record a heartbeat so the instance keeps waiting, then throw a retryable
 * error so the message is redelivered.
 */
export async function removeTerminatingMember(notice: TerminationNotice, deps: RemovalDeps): Promise<RemovalOutcome> {
  if (notice.groupName !== deps.groupName) return { kind: 'ignored', reason: 'other-group' };
  const fields = { instanceId: notice.instanceId, groupName: notice.groupName };
  let plan: TerminationPlan;
  let removal: 'removed' | 'not-found' | 'none' = 'none';
  // First of all, restart the hook's heartbeat timeout: if this attempt fails, even by timing out, the
  // queue's redelivery (one visibility timeout later) still finds the instance waiting.
  await deps.lifecycle.heartbeat(notice).catch((error: unknown) => deps.log.warn('lifecycle heartbeat failed', { ...fields, error: describeError(error) }));
  try {
    await deps.beforeEtcd?.();
    const instances = await deps.inventory.instancesOf(deps.groupName);
    const privateIp = instances.find((i) => i.instanceId === notice.instanceId)?.privateIp;
    const own = privateIp === undefined ? undefined : `${deps.scheme ?? 'http'}://${privateIp}:${deps.clientPort}`;
    const all = deps.endpoints ?? clientUrls(activePeers(instances), deps.clientPort, deps.scheme);
    const others = all.filter((e) => e !== own);
    // Removal goes through the other members; only the terminating member itself may be left (scale-in to
    // zero): then it is asked.
    const endpoints = others.length > 0 ? others : own ? [own] : all;
    // Reading the membership (and promoting) may go through the terminating member too: it still runs while
    // its instance waits, and it may be the last voter, beside learners and instances whose etcd has not
    // started, none of which can answer for the cluster.
    const etcd = deps.openCluster(own !== undefined && others.length > 0 ? [...others, own] : endpoints);
    try {
      let members: readonly Member[];
      try {
        ({ members } = await etcd.listMembers());
      } catch (error) {
        if (!(error instanceof EtcdUnavailableError)) throw error;
        const fallback = planWithoutQuorum(await ownEtcd(own, deps));
        deps.log.warn('no member answers with quorum', { ...fields, decision: fallback.kind, reason: fallback.reason });
        if (fallback.kind === 'hold') throw error;
        plan = { kind: 'complete', reason: fallback.reason };
        const lifecycle = await deps.lifecycle.complete(notice);
        deps.log.info('lifecycle action completed', { ...fields, result: lifecycle });
        return { kind: 'completed', plan, removal: 'none', lifecycle };
      }
      plan = planTermination(notice, members, privateIp);
      deps.log.info('termination decision', { ...fields, decision: plan.kind, ...planFields(plan) });
      if (plan.kind === 'promote-first') {
        const promoting = plan;
        const promoted = await promoteALearner(etcd, plan.learnerIds, deps, fields).then(
          () => true,
          (error: unknown) => {
            // The queue's last delivery (its redrive moves the message aside next, and the hook's timeout then
            // lets the instance go unheard): a final backup of the last voter instead, which the learners,
            // left without a voter, restore from.
            if (error instanceof LearnersNotReadyError && deps.lastDelivery === true && deps.finalBackup) return false;
            throw error;
          },
        );
        if (promoted) {
          ({ members } = await etcd.listMembers());
          plan = planTermination(notice, members, privateIp);
          deps.log.info('termination decision', { ...fields, decision: plan.kind, ...planFields(plan) });
          if (plan.kind === 'promote-first') throw new EtcdUnavailableError('a learner was promoted, yet the member list still shows none voting besides this member');
        } else {
          plan = { kind: 'keep-last-voter', memberId: promoting.memberId, reason: 'last-voting-member' };
          deps.log.warn('no learner caught up in all the deliveries of this termination; backing the last voter up before it goes', {
            ...fields,
            decision: plan.kind,
            learners: promoting.learnerIds.map(hexMemberId),
          });
        }
      }
      if (plan.kind === 'remove') {
        await handOffLeadership(etcd, plan.memberId, members, deps.log, fields);
        removal = await removeWhenAllowed(() => deps.openCluster(endpoints), plan.memberId, deps, fields);
        deps.log.info('removed member', { ...fields, memberId: hexMemberId(plan.memberId), result: removal });
      } else if (plan.kind === 'keep-last-voter' && deps.finalBackup) {
        await deps.finalBackup(notice);
        deps.log.info('handed the final backup over; the backup function lets the last member go when it is done', fields);
        return { kind: 'final-backup-started', plan };
      }
    } finally {
      etcd.close();
    }
  } catch (error) {
    deps.log.warn('removal failed; extending the lifecycle hook and retrying', { ...fields, error: describeError(error) });
    try {
      await deps.lifecycle.heartbeat(notice);
    } catch (heartbeatError) {
      deps.log.warn('lifecycle heartbeat failed', { ...fields, error: describeError(heartbeatError) });
    }
    throw new EtcdUnavailableError(`removing the member of ${notice.instanceId} failed: ${describeError(error)}`, { cause: error });
  }
  const lifecycle = await deps.lifecycle.complete(notice);
  deps.log.info('lifecycle action completed', { ...fields, result: lifecycle });
  return { kind: 'completed', plan, removal, lifecycle };
}

/**
 * Whether the terminating instance's own etcd answers Status (twice, a few seconds apart, so a restart in
 * progress does not count as silence); no address at all is silence.
 */
async function ownEtcd(own: string | undefined, deps: RemovalDeps): Promise<'answers' | 'silent'> {
  if (own === undefined) return 'silent';
  for (let check = 0; check < 2; check += 1) {
    if (check > 0) await deps.sleep(3000);
    const etcd = deps.openCluster([own]);
    try {
      await etcd.status(own);
      return 'answers';
    } catch (error) {
      // A refused handshake or identity is an etcd that runs: never let it go as if it were silent.
      if (refusedButAnswered(describeError(error))) return 'answers';
    } finally {
      etcd.close();
    }
  }
  return 'silent';
}

/**
 * Removes the member, trying again while etcd refuses the change as too soon: its strict reconfiguration
 * check wants every voter connected to the leader for 5 s, which is not yet so right after a member joined
 * (a rolling replacement) or leadership moved (the handoff above); the etcd client's own quick retries of
 * that refusal open its circuit breaker, so each retry goes through a new client. Any other error goes to
 * the caller.
 */
async function removeWhenAllowed(
  open: () => EtcdCluster & EtcdMembership,
  memberId: string,
  deps: RemovalDeps,
  fields: Record<string, unknown>,
): Promise<'removed' | 'not-found'> {
  const { attempts, delayMs } = deps.tooSoonRetry ?? { attempts: 15, delayMs: 1000 };
  for (let attempt = 1; ; attempt += 1) {
    // Through the other members, each try with a new client: a refused one has its circuit breaker open for seconds.
    const client = open();
    try {
      return await client.remove(memberId);
    } catch (error) {
      const transient = error instanceof MembershipChangeTooSoonError || error instanceof EtcdBackoffError;
      if (!transient || attempt >= attempts) throw error;
      if (attempt === 1) deps.log.info('etcd refuses member changes for a few seconds after a join or a leader change; waiting', { ...fields, delayMs });
      await deps.sleep(delayMs);
    } finally {
      client.close();
    }
  }
}

/** The last voter cannot go before a learner votes: nothing could promote one afterwards. */
export class LearnersNotReadyError extends EtcdUnavailableError {}

/**
 * Promotes the first learner etcd accepts (it must have caught up with the leader's log), trying again for
 * a while within this invocation; none ready: a retryable error, so the instance keeps waiting (the caller
 * records a heartbeat) and the message comes back.
 */
async function promoteALearner(etcd: EtcdMembership, learnerIds: readonly string[], deps: RemovalDeps, fields: Record<string, unknown>): Promise<void> {
  const { attempts, delayMs } = deps.promoteRetry ?? { attempts: 10, delayMs: 3000 };
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    for (const id of learnerIds) {
      const result = await etcd.promote(id).catch((error: unknown) => `failed: ${describeError(error)}`);
      if (result === 'promoted' || result === 'not-a-learner') {
        deps.log.info('promoted a learner before the last voter goes', { ...fields, memberId: hexMemberId(id), result });
        return;
      }
    }
    if (attempt === 1) deps.log.info('the last voter waits for a learner to catch up and vote', { ...fields, learners: learnerIds.map(hexMemberId) });
    if (attempt < attempts) await deps.sleep(delayMs);
  }
  throw new LearnersNotReadyError(
    `the last voting member stays until a learner has caught up and votes (learners ${learnerIds.map(hexMemberId).join(', ')}): ` +
      'without a voter nothing could ever promote them; the instance keeps waiting and this is tried again',
  );
}

/**
 * Moves leadership off the member about to be removed, so the cluster keeps serving writes without waiting
 * out an election. Best effort: when it fails, the removal goes ahead and etcd elects a new leader itself.
 */
async function handOffLeadership(
  etcd: EtcdCluster & EtcdMembership,
  memberId: string,
  members: readonly Member[],
  log: Log,
  fields: Record<string, unknown>,
): Promise<void> {
  const answered = await Promise.all(
    members
      .filter((m) => !m.isLearner && m.clientUrls.length > 0)
      .map((m) => etcd.status(m.clientUrls[0] as string).catch(() => undefined)),
  );
  const statuses = answered.filter((s) => s !== undefined);
  const handoff = leadershipHandoff(memberId, members, statuses);
  if (handoff.kind === 'not-leader') return;
  const leaderUrl = members.find((m) => m.id === memberId)?.clientUrls[0];
  if (handoff.kind === 'no-target' || leaderUrl === undefined) {
    log.warn('the terminating member leads and no other voter answered; removing it without a handoff', fields);
    return;
  }
  try {
    await etcd.moveLeader(leaderUrl, handoff.targetId);
    log.info('moved leadership off the terminating member', { ...fields, from: hexMemberId(memberId), to: hexMemberId(handoff.targetId) });
  } catch (error) {
    log.warn('leadership handoff failed; removing the member anyway', { ...fields, error: describeError(error) });
  }
}

function planFields(plan: TerminationPlan): Record<string, unknown> {
  switch (plan.kind) {
    case 'remove':
      return { memberId: hexMemberId(plan.memberId), memberName: plan.memberName, matchedBy: plan.matchedBy };
    case 'keep-last-voter':
      return { memberId: hexMemberId(plan.memberId), reason: plan.reason };
    case 'promote-first':
      return { memberId: hexMemberId(plan.memberId), reason: plan.reason, learners: plan.learnerIds.map(hexMemberId) };
    default:
      return { reason: plan.reason };
  }
}
