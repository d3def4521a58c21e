import { decideQuorumRecovery, graceElapsed, type AnsweredStatus, type QuorumRecoveryPlan } from '../domain/quorum-loss.js';
import { hexMemberId } from '../domain/members.js';
import { describeError } from '../errors.js';
import type { Log } from '../logger.js';
import type { EtcdCluster, EtcdLocalView, InstanceInventory, MemberStatus } from '../ports.js';

export interface QuorumRecoveryDeps {
  /** This instance's etcd client URL: every question about its own state goes there and nowhere else. */
  readonly selfUrl: string;
  readonly openCluster: (endpoints: readonly string[]) => EtcdCluster & EtcdLocalView;
  readonly inventory: Pick<InstanceInventory, 'instanceFacts'>;
  /**
   * Stops this instance's etcd and starts it again, once, with `--force-new-cluster`. False when there is
   * no etcd to restart any more (it exited on its own, or the agent is shutting down).
   */
  readonly forceNewCluster: () => Promise<boolean>;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly log: Log;
  /** How long quorum must be missing without interruption before the survivors are considered. */
  readonly graceMs: number;
  readonly pollMs: number;
  /** True once the supervised etcd has exited for good: the watch ends with it. */
  readonly stopped: () => boolean;
}

/** What this member's own etcd says right now. */
type LocalQuorum =
  | { readonly kind: 'quorum' }
  | { readonly kind: 'no-quorum'; readonly status: MemberStatus }
  /** A learner has no vote and cannot serve a linearizable read: not this watch's business. */
  | { readonly kind: 'learner' }
  /** etcd does not answer (starting, stopping): no evidence either way. */
  | { readonly kind: 'silent'; readonly error: string };

async function checkLocal(deps: QuorumRecoveryDeps): Promise<LocalQuorum> {
  const etcd = deps.openCluster([deps.selfUrl]);
  try {
    let status: MemberStatus;
    try {
      status = await etcd.status(deps.selfUrl);
    } catch (error) {
      return { kind: 'silent', error: describeError(error) };
    }
    if (status.isLearner) return { kind: 'learner' };
    // No leader means no quorum; a leader it still believes in is confirmed by a linearizable read.
    if (status.leaderId !== '0' && (await etcd.hasQuorum())) return { kind: 'quorum' };
    return { kind: 'no-quorum', status };
  } finally {
    etcd.close();
  }
}

/** Gathers the survivor's view (local member list, EC2 facts, every other voter's Status) and decides. */
async function survey(deps: QuorumRecoveryDeps, self: MemberStatus, lostForMs: number): Promise<QuorumRecoveryPlan> {
  const etcd = deps.openCluster([deps.selfUrl]);
  try {
    const { members } = await etcd.localMembers(deps.selfUrl);
    const voters = members.filter((m) => !m.isLearner);
    const facts = await deps.inventory.instanceFacts(voters.map((v) => v.name));
    const statuses = new Map<string, AnsweredStatus>();
    await Promise.all(
      voters
        .filter((v) => v.id !== self.memberId)
        .map(async (v) => {
          const url = v.clientUrls[0];
          if (url === undefined) return;
          const status = await etcd.status(url).catch(() => undefined);
          if (status) statuses.set(v.id, status);
        }),
    );
    return decideQuorumRecovery({ lostForMs, graceMs: deps.graceMs, self, members, facts, statuses });
  } finally {
    etcd.close();
  }
}

/** Log fields of a plan: members by name and hex ID, as operators see them in etcdctl. */
function describePlan(plan: QuorumRecoveryPlan): Record<string, unknown> {
  const named = (m: { memberId: string; name: string }) => `${m.name}(${hexMemberId(m.memberId)})`;
  const fields: Record<string, unknown> = {};
  if (plan.gone) fields.gone = plan.gone.map((g) => `${named(g)}: ${g.why}`);
  if (plan.kind === 'decline' && plan.remaining) fields.remaining = plan.remaining.map((r) => `${named(r)}: ${r.why}`);
  if (plan.kind === 'decline' && plan.members) fields.members = plan.members;
  if (plan.compared) fields.raftIndexes = plan.compared.map((c) => `${named(c)}: ${c.raftIndex}`);
  return fields;
}

/**
 * Watches this member's own etcd for a permanent loss of quorum and, when the survivors' situation is
 * unambiguous, recovers by restarting it with `--force-new-cluster` (keeps its data, cluster ID and member
 * ID; the membership becomes this member alone). Replacements then join it as learners through the usual
 * bootstrap, and any other survivor is rejected as removed, exits, and rejoins with its data set aside.
 * Runs until the supervised etcd is gone; every failure is logged and the watch goes on.
 *
 * 1. ask the own etcd for Status (and a linearizable read when it names a leader) 2. time how long quorum has
 * been lost 3. after the grace period: local member list, EC2 facts of the voters, every other voter's Status
 * 4. decide (decideQuorumRecovery) 5. re-check the own quorum 6. restart etcd with the force flag.
 */
export async function recoverFromQuorumLoss(deps: QuorumRecoveryDeps): Promise<void> {
  const { log } = deps;
  let lostSince: number | undefined;
  let lastSaid = '';
  // Say each distinct decline (or failure) once at warn, then only at debug while it stays the same.
  const say = (message: string, fields: Record<string, unknown>) => {
    const key = `${message} ${JSON.stringify(fields)}`;
    log[key === lastSaid ? 'debug' : 'warn'](message, fields);
    lastSaid = key;
  };
  while (!deps.stopped()) {
    try {
      const local = await checkLocal(deps);
      if (local.kind !== 'no-quorum') {
        if (lostSince !== undefined) log.info('quorum loss watch reset', { state: local.kind, lostForMs: deps.now() - lostSince });
        lostSince = undefined;
        lastSaid = '';
      } else {
        if (lostSince === undefined) {
          lostSince = deps.now();
          log.info('etcd has no quorum', { memberId: hexMemberId(local.status.memberId), leaderId: local.status.leaderId, graceMs: deps.graceMs });
        }
        const lostForMs = deps.now() - lostSince;
        if (graceElapsed(lostForMs, deps.graceMs)) {
          const plan = await survey(deps, local.status, lostForMs);
          if (plan.kind === 'decline') {
            say('not forcing a new cluster', { reason: plan.reason, ...describePlan(plan) });
          } else {
            const again = await checkLocal(deps);
            if (again.kind !== 'no-quorum') {
              log.info('not forcing a new cluster', { reason: 'quorum-returned-before-acting', state: again.kind });
              lostSince = undefined;
            } else {
              log.info('forcing a new cluster from this member', {
                memberId: hexMemberId(local.status.memberId),
                clusterId: hexMemberId(local.status.clusterId),
                lostForMs: deps.now() - lostSince,
                voters: plan.voters,
                ...describePlan(plan),
              });
              if (!(await deps.forceNewCluster())) return;
              log.info('etcd restarted with force-new-cluster; replacements can join it now');
              lostSince = undefined;
              lastSaid = '';
            }
          }
        }
      }
    } catch (error) {
      say('quorum loss check failed', { error: describeError(error) });
    }
    await deps.sleep(deps.pollMs);
  }
}
