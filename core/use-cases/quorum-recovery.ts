import { servingElsewhere, type AgentRegistration } from '../domain/election.js';
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
  /**
   * Stops this instance's etcd, sets its data aside and ends the agent run, so the group restores the newest
   * backup as after a total loss (this member alone survived, behind that backup).
   */
  readonly restoreInstead: () => Promise<void>;
  /** This instance's ID: its own registration is not evidence of anything. */
  readonly selfInstanceId: string;
  /** The agents' registrations (S3), for `servingElsewhere`; they count when written within `freshMs`. */
  readonly registrations: () => Promise<readonly AgentRegistration[]>;
  readonly freshMs: number;
  /** The group's newest valid backup: its key, the cluster it is of and the revision before it was taken. */
  readonly newestBackup: () => Promise<{ key: string; clusterId: string; revision: string } | undefined>;
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
export type LocalQuorum =
  | { readonly kind: 'quorum'; readonly status: MemberStatus }
  | { readonly kind: 'no-quorum'; readonly status: MemberStatus }
  /** etcd does not answer (starting, stopping): no evidence either way. */
  | { readonly kind: 'silent'; readonly error: string };

/**
 * Whether this member's own etcd has a quorum: a voter that names a leader and answers a linearizable read;
 * a learner (which serves no linearizable read and never campaigns, so it keeps naming a dead leader) whose
 * leader answers Status as the leader of the same cluster.
 */
export async function checkLocal(selfUrl: string, openCluster: QuorumRecoveryDeps['openCluster']): Promise<LocalQuorum> {
  const etcd = openCluster([selfUrl]);
  try {
    let status: MemberStatus;
    try {
      status = await etcd.status(selfUrl);
    } catch (error) {
      return { kind: 'silent', error: describeError(error) };
    }
    if (status.leaderId === '0') return { kind: 'no-quorum', status };
    if (!status.isLearner) return (await etcd.hasQuorum()) ? { kind: 'quorum', status } : { kind: 'no-quorum', status };
    const { members } = await etcd.localMembers(selfUrl);
    const leaderUrl = members.find((m) => m.id === status.leaderId)?.clientUrls[0];
    if (leaderUrl === undefined) return { kind: 'no-quorum', status };
    const leader = openCluster([leaderUrl]);
    try {
      const answer = await leader.status(leaderUrl).catch(() => undefined);
      const leads = answer !== undefined && answer.memberId === status.leaderId && answer.leaderId === answer.memberId && answer.clusterId === status.clusterId;
      return leads ? { kind: 'quorum', status } : { kind: 'no-quorum', status };
    } finally {
      leader.close();
    }
  } finally {
    etcd.close();
  }
}

/**
 * Gathers the survivor's view (local member list, EC2 facts of every member, every other member's Status,
 * the agents' registrations, the newest backup) and decides.
 */
async function survey(deps: QuorumRecoveryDeps, self: MemberStatus, lostForMs: number): Promise<QuorumRecoveryPlan> {
  const etcd = deps.openCluster([deps.selfUrl]);
  try {
    const { members } = await etcd.localMembers(deps.selfUrl);
    const facts = await deps.inventory.instanceFacts(members.map((m) => m.name));
    const statuses = new Map<string, AnsweredStatus>();
    await Promise.all(
      members
        .filter((m) => m.id !== self.memberId)
        .map(async (m) => {
          const url = m.clientUrls[0];
          if (url === undefined) return;
          const status = await etcd.status(url).catch(() => undefined);
          if (status) statuses.set(m.id, status);
        }),
    );
    const elsewhere = servingElsewhere(deps.selfInstanceId, self.clusterId, await deps.registrations(), deps.now(), deps.freshMs, {
      knownMemberIds: new Set(members.map((m) => m.id)),
      graceMs: deps.graceMs,
    });
    const newestBackup = await deps.newestBackup();
    return decideQuorumRecovery({ lostForMs, graceMs: deps.graceMs, self, members, facts, statuses, servingElsewhere: elsewhere, newestBackup });
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
  if (plan.kind !== 'restore-instead' && plan.compared) fields.raftIndexes = plan.compared.map((c) => `${named(c)}: ${c.raftIndex}`);
  if (plan.kind === 'restore-instead') Object.assign(fields, { backupKey: plan.backupKey, backupRevision: plan.backupRevision, ownRevision: plan.ownRevision, fromLearner: plan.fromLearner });
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
      const local = await checkLocal(deps.selfUrl, deps.openCluster);
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
          } else if (plan.kind === 'restore-instead') {
            const why = plan.fromLearner
              ? 'every voter is gone for good and etcd cannot force a cluster from a learner'
              : 'the newest backup is ahead of this lone survivor';
            log.warn(`not forcing a new cluster: ${why}; setting its data aside so the group restores the backup`, {
              memberId: hexMemberId(local.status.memberId),
              clusterId: hexMemberId(local.status.clusterId),
              ...describePlan(plan),
            });
            await deps.restoreInstead();
            return;
          } else {
            const again = await checkLocal(deps.selfUrl, deps.openCluster);
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
