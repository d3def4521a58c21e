import type { ServingState } from '../domain/election.js';
import { describeError } from '../errors.js';
import type { Log } from '../logger.js';
import type { SeedCoordinator } from '../ports.js';
import { checkLocal, type QuorumRecoveryDeps } from './quorum-recovery.js';

export interface ServingHeartbeatDeps {
  readonly selfInstanceId: string;
  readonly selfUrl: string;
  readonly openCluster: QuorumRecoveryDeps['openCluster'];
  readonly seeds: Pick<SeedCoordinator, 'register'>;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly intervalMs: number;
  /** True once the supervised etcd has exited for good: the heartbeat ends with it. */
  readonly stopped: () => boolean;
  readonly log: Log;
}

/**
 * The next serving state from what the own etcd said: `since` carries over while the cluster and the quorum
 * stay as they were. A silent etcd serves nothing: no quorum, in the cluster it last reported. Pure.
 */
export function nextServingState(
  last: ServingState | undefined,
  local: { kind: 'quorum' | 'no-quorum'; status: { clusterId: string; memberId: string } } | { kind: 'silent' },
  now: number,
): ServingState | undefined {
  const current =
    local.kind === 'silent'
      ? last && { clusterId: last.clusterId, memberId: last.memberId, quorum: false }
      : { clusterId: local.status.clusterId, memberId: local.status.memberId, quorum: local.kind === 'quorum' };
  if (!current) return undefined;
  const unchanged = last !== undefined && last.clusterId === current.clusterId && last.memberId === current.memberId && last.quorum === current.quorum;
  return { ...current, since: unchanged ? last.since : now };
}

/**
 * While etcd runs, refreshes this agent's registration with what its etcd serves (cluster, member, quorum,
 * since when). Other agents read it before forcing a cluster (a survivor cut off by a partition sees that the
 * cluster lives on), and reconcile reads it to tell a member that is cut off from one that is merely slow.
 * Failures are logged and the heartbeat goes on.
 */
export async function publishServingState(deps: ServingHeartbeatDeps): Promise<void> {
  let last: ServingState | undefined;
  let failing = false;
  while (!deps.stopped()) {
    const local = await checkLocal(deps.selfUrl, deps.openCluster).catch((error: unknown) => ({ kind: 'silent' as const, error: describeError(error) }));
    last = nextServingState(last, local, deps.now());
    try {
      await deps.seeds.register({ instanceId: deps.selfInstanceId, hasData: true, at: deps.now(), serving: last });
      failing = false;
    } catch (error) {
      if (!failing) deps.log.warn('could not refresh this agent\'s registration; retrying', { error: describeError(error) });
      failing = true;
    }
    await deps.sleep(deps.intervalMs);
  }
}
