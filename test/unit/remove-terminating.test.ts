import { describe, expect, it, vi } from 'vitest';
import type { GroupInstance } from '../../core/domain/instances.js';
import type { TerminationNotice } from '../../core/domain/lifecycle-events.js';
import type { Member } from '../../core/domain/members.js';
import { EtcdBackoffError, EtcdUnavailableError, MembershipChangeTooSoonError } from '../../core/errors.js';
import { silentLog } from '../../core/logger.js';
import type { EtcdCluster, EtcdMembership, LifecycleActions } from '../../core/ports.js';
import { leadershipHandoff } from '../../core/domain/termination.js';
import { removeTerminatingMember, type RemovalDeps } from '../../core/use-cases/remove-terminating.js';

const notice: TerminationNotice = { groupName: 'g', hookName: 'h', instanceId: 'i-last', token: 't', time: undefined };
const last: Member = { id: '1', name: 'i-last', peerUrls: ['http://10.0.0.1:2380'], clientUrls: ['http://10.0.0.1:2379'], isLearner: false };
const instance: GroupInstance = { instanceId: 'i-last', lifecycleState: 'Terminating:Wait', healthStatus: 'Healthy', availabilityZone: 'a', privateIp: '10.0.0.1' };

/** Lifecycle actions that only record, in order, what was called. */
function recordingLifecycle(order: string[]): LifecycleActions {
  return {
    complete: () => {
      order.push('complete');
      return Promise.resolve('completed');
    },
    heartbeat: () => {
      order.push('heartbeat');
      return Promise.resolve();
    },
  };
}

function deps(order: string[], finalBackup: RemovalDeps['finalBackup']): RemovalDeps {
  const etcd = {
    listMembers: () => Promise.resolve({ clusterId: 'c', members: [last] }),
    remove: vi.fn(),
    close: () => undefined,
  } as unknown as EtcdCluster & EtcdMembership;
  const lifecycle = recordingLifecycle(order);
  return {
    groupName: 'g',
    inventory: { instancesOf: () => Promise.resolve([instance]), groupOf: () => Promise.resolve('g'), instanceFacts: () => Promise.resolve(new Map()) },
    openCluster: (endpoints) => {
      order.push(`open ${endpoints.join(',')}`);
      return etcd;
    },
    lifecycle,
    clientPort: 2379,
    endpoints: undefined,
    finalBackup,
    log: silentLog,
    sleep: () => Promise.resolve(),
  };
}

describe('removeTerminatingMember on scale-in to zero', () => {
  it('hands the final backup of the last voting member over, keeps the member, and leaves the action to the backup', async () => {
    const order: string[] = [];
    const outcome = await removeTerminatingMember(
      notice,
      deps(order, (n) => {
        order.push(`backup for ${n.instanceId}`);
        return Promise.resolve();
      }),
    );
    expect(order).toEqual(['heartbeat', 'open http://10.0.0.1:2379', 'backup for i-last']);
    expect(outcome).toMatchObject({ kind: 'final-backup-started', plan: { kind: 'keep-last-voter' } });
  });

  it('does not complete the action when the final backup cannot be handed over: a heartbeat, and the message is retried', async () => {
    const order: string[] = [];
    await expect(removeTerminatingMember(notice, deps(order, () => Promise.reject(new Error('Lambda is down'))))).rejects.toThrow('Lambda is down');
    expect(order).toEqual(['heartbeat', 'open http://10.0.0.1:2379', 'heartbeat']);
  });

  it('heartbeats before it waits for what etcd needs (the TLS certificate), and again when that fails, so the instance keeps waiting', async () => {
    const order: string[] = [];
    const failing: RemovalDeps = {
      ...deps(order, undefined),
      beforeEtcd: () => {
        order.push('certificate');
        return Promise.reject(new Error('the certificate issuer failed'));
      },
    };
    await expect(removeTerminatingMember(notice, failing)).rejects.toThrow('the certificate issuer failed');
    expect(order).toEqual(['heartbeat', 'certificate', 'heartbeat']);
  });

  it('without quorum, lets a member whose etcd is silent too go at once, and holds one whose etcd answers', async () => {
    const noQuorum = (ownAnswers: boolean | Error): RemovalDeps => {
      const order: string[] = [];
      const base = deps(order, undefined);
      const etcd = {
        listMembers: () => Promise.reject(new EtcdUnavailableError('no etcd member with quorum answered')),
        status: () => (ownAnswers === true ? Promise.resolve({ memberId: '1' }) : Promise.reject(ownAnswers === false ? new Error('connection refused') : ownAnswers)),
        close: () => undefined,
      } as unknown as EtcdCluster & EtcdMembership;
      return { ...base, openCluster: () => etcd };
    };
    await expect(removeTerminatingMember(notice, noQuorum(false))).resolves.toMatchObject({ kind: 'completed', plan: { kind: 'complete', reason: 'silent-without-quorum' } });
    await expect(removeTerminatingMember(notice, noQuorum(true))).rejects.toMatchObject({ retryable: true });
    // A member that refuses the function's certificate (expired, another CA, plaintext) runs: it is held too.
    const refused = new Error('14 UNAVAILABLE: No connection established. Last error: Error: certificate has expired');
    await expect(removeTerminatingMember(notice, noQuorum(refused))).rejects.toMatchObject({ retryable: true });
  });

  it('without a backup function, lets the last member go', async () => {
    const order: string[] = [];
    const outcome = await removeTerminatingMember(notice, deps(order, undefined));
    expect(order).toEqual(['heartbeat', 'open http://10.0.0.1:2379', 'complete']);
    expect(outcome).toMatchObject({ kind: 'completed', removal: 'none' });
  });
});

describe('leadershipHandoff', () => {
  const voter = (id: string): Member => ({ id, name: `i-${id}`, peerUrls: [`http://10.0.0.${id}:2380`], clientUrls: [`http://10.0.0.${id}:2379`], isLearner: false });
  const members = [voter('1'), voter('2'), voter('3'), { ...voter('4'), isLearner: true }];
  const status = (memberId: string, leaderId: string, raftIndex: string, isLearner = false) => ({ memberId, leaderId, raftIndex, isLearner });

  it.each([
    ['a follower leaves: nothing to hand over', '2', [status('1', '1', '10'), status('2', '1', '10'), status('3', '1', '10')], { kind: 'not-leader' }],
    ['the leader leaves: the voter with the newest log takes over', '1', [status('1', '1', '12'), status('2', '1', '10'), status('3', '1', '11')], { kind: 'move', targetId: '3' }],
    ['equal logs: the lowest member ID', '1', [status('1', '1', '12'), status('3', '1', '11'), status('2', '1', '11')], { kind: 'move', targetId: '2' }],
    ['a learner never takes over, however new its log', '1', [status('1', '1', '12'), status('4', '1', '99', true), status('2', '1', '5')], { kind: 'move', targetId: '2' }],
    ['the leader is silent, but a follower names it', '1', [status('2', '1', '10'), status('3', '1', '10')], { kind: 'move', targetId: '2' }],
    ['no other voter answered', '1', [status('1', '1', '12')], { kind: 'no-target' }],
    ['no one answered', '1', [], { kind: 'not-leader' }],
  ] as const)('%s', (_, leaving, statuses, expected) => {
    expect(leadershipHandoff(leaving, members, statuses)).toEqual(expected);
  });

  it('compares 64-bit member IDs exactly (beyond what a double holds)', () => {
    const big = [voter('18446744073709551614'), voter('18446744073709551615'), voter('1')];
    const statuses = [status('1', '1', '7'), status('18446744073709551615', '1', '7'), status('18446744073709551614', '1', '7')];
    expect(leadershipHandoff('1', big, statuses)).toEqual({ kind: 'move', targetId: '18446744073709551614' });
  });
});

describe('removeTerminatingMember of the leader', () => {
  const voter = (id: string, ip: string): Member => ({ id, name: `i-${id}`, peerUrls: [`http://${ip}:2380`], clientUrls: [`http://${ip}:2379`], isLearner: false });
  const members = [voter('1', '10.0.0.1'), voter('2', '10.0.0.2'), voter('3', '10.0.0.3')];
  const leaving: TerminationNotice = { groupName: 'g', hookName: 'h', instanceId: 'i-1', token: 't', time: undefined };
  const instances: GroupInstance[] = members.map((m, i) => ({
    instanceId: m.name,
    lifecycleState: i === 0 ? 'Terminating:Wait' : 'InService',
    healthStatus: 'Healthy',
    availabilityZone: 'a',
    privateIp: `10.0.0.${m.id}`,
  }));

  function withEtcd(order: string[], moveLeader: () => Promise<void>, remove: () => Promise<string> = () => Promise.resolve('removed')): RemovalDeps {
    const etcd = {
      listMembers: () => Promise.resolve({ clusterId: 'c', members }),
      status: (endpoint: string) => {
        const id = endpoint.slice('http://10.0.0.'.length, endpoint.lastIndexOf(':'));
        return Promise.resolve({ memberId: id, leaderId: '1', raftIndex: id === '3' ? '20' : '19', isLearner: false });
      },
      moveLeader: (endpoint: string, target: string) => {
        order.push(`move ${endpoint} -> ${target}`);
        return moveLeader();
      },
      remove: (id: string) => {
        order.push(`remove ${id}`);
        return remove();
      },
      close: () => undefined,
    } as unknown as EtcdCluster & EtcdMembership;
    return {
      groupName: 'g',
      inventory: { instancesOf: () => Promise.resolve(instances), groupOf: () => Promise.resolve('g'), instanceFacts: () => Promise.resolve(new Map()) },
      openCluster: () => etcd,
      lifecycle: recordingLifecycle(order),
      clientPort: 2379,
      endpoints: undefined,
      finalBackup: undefined,
      log: silentLog,
      sleep: () => Promise.resolve(),
      tooSoonRetry: { attempts: 3, delayMs: 1 },
    };
  }

  it('hands leadership to the most caught-up voter through the leader, then removes it, then completes', async () => {
    const order: string[] = [];
    await removeTerminatingMember(leaving, withEtcd(order, () => Promise.resolve()));
    expect(order).toEqual(['heartbeat', 'move http://10.0.0.1:2379 -> 3', 'remove 1', 'complete']);
  });

  it('removes the member anyway when the handoff fails (etcd then elects a leader itself)', async () => {
    const order: string[] = [];
    await removeTerminatingMember(leaving, withEtcd(order, () => Promise.reject(new Error('leader changed'))));
    expect(order).toEqual(['heartbeat', 'move http://10.0.0.1:2379 -> 3', 'remove 1', 'complete']);
  });

  it('waits out etcd\'s "too soon" refusal after the handoff within the invocation, then removes and completes', async () => {
    const order: string[] = [];
    const refusals = [new MembershipChangeTooSoonError('etcdserver: unhealthy cluster'), new EtcdBackoffError('circuit breaker is open')];
    const remove = () => {
      const next = refusals.shift();
      return next ? Promise.reject(next) : Promise.resolve('removed');
    };
    const outcome = await removeTerminatingMember(leaving, withEtcd(order, () => Promise.resolve(), remove));
    expect(order).toEqual(['heartbeat', 'move http://10.0.0.1:2379 -> 3', 'remove 1', 'remove 1', 'remove 1', 'complete']);
    expect(outcome).toMatchObject({ kind: 'completed', removal: 'removed' });
  });

  it('gives up after its attempts, or at once on any other error: a heartbeat, then a retryable error for SQS', async () => {
    const order: string[] = [];
    const tooSoon = () => Promise.reject(new MembershipChangeTooSoonError('etcdserver: unhealthy cluster'));
    await expect(removeTerminatingMember(leaving, withEtcd(order, () => Promise.resolve(), tooSoon))).rejects.toMatchObject({ retryable: true });
    // A heartbeat first (an attempt that then times out still leaves the instance waiting), one after the failure.
    expect(order).toEqual(['heartbeat', 'move http://10.0.0.1:2379 -> 3', 'remove 1', 'remove 1', 'remove 1', 'heartbeat']);

    const other: string[] = [];
    const down = () => Promise.reject(new EtcdUnavailableError('14 UNAVAILABLE: no connection'));
    await expect(removeTerminatingMember(leaving, withEtcd(other, () => Promise.resolve(), down))).rejects.toMatchObject({ retryable: true });
    expect(other).toEqual(['heartbeat', 'move http://10.0.0.1:2379 -> 3', 'remove 1', 'heartbeat']);
  });
});

describe('removeTerminatingMember of the last voter while learners exist', () => {
  const leaving: TerminationNotice = { groupName: 'g', hookName: 'h', instanceId: 'i-1', token: 't', time: undefined };
  const member = (id: string, isLearner: boolean): Member => ({
    id,
    name: `i-${id}`,
    peerUrls: [`http://10.0.0.${id}:2380`],
    clientUrls: [`http://10.0.0.${id}:2379`],
    isLearner,
  });
  const instances: GroupInstance[] = ['1', '2'].map((id) => ({
    instanceId: `i-${id}`,
    lifecycleState: id === '1' ? 'Terminating:Wait' : 'InService',
    healthStatus: 'Healthy',
    availabilityZone: 'a',
    privateIp: `10.0.0.${id}`,
  }));

  /** A voter (1) leaving and a learner (2) that catches up after `notReadyFor` promotion attempts. */
  function world(notReadyFor: number, options: { learnersRefuse?: boolean } = {}) {
    const order: string[] = [];
    let learner = true;
    let refusals = notReadyFor;
    const etcd = {
      listMembers: () => Promise.resolve({ clusterId: 'c', members: [member('1', false), member('2', learner)] }),
      status: (endpoint: string) => Promise.resolve({ memberId: endpoint.includes('.1:') ? '1' : '2', leaderId: '1', raftIndex: '9', isLearner: false }),
      moveLeader: (_endpoint: string, target: string) => {
        order.push(`move -> ${target}`);
        return Promise.resolve();
      },
      promote: (id: string) => {
        order.push(`promote ${id}`);
        if (refusals > 0) {
          refusals -= 1;
          return Promise.resolve('not-ready');
        }
        learner = false;
        return Promise.resolve('promoted');
      },
      remove: (id: string) => {
        order.push(`remove ${id}`);
        return Promise.resolve('removed');
      },
      close: () => undefined,
    } as unknown as EtcdCluster & EtcdMembership;
    const finalBackup = vi.fn(() => Promise.resolve());
    const deps: RemovalDeps = {
      groupName: 'g',
      inventory: { instancesOf: () => Promise.resolve(instances), groupOf: () => Promise.resolve('g'), instanceFacts: () => Promise.resolve(new Map()) },
      // learnersRefuse: as etcd does, a learner serves no member list; a pool of learners alone has no quorum to offer.
      openCluster: (endpoints) =>
        options.learnersRefuse && !endpoints.some((e) => e.includes('.1:') || !learner)
          ? ({ ...etcd, listMembers: () => Promise.reject(new EtcdUnavailableError('no etcd member with quorum answered: rpc not supported for learner')) })
          : etcd,
      lifecycle: recordingLifecycle(order),
      clientPort: 2379,
      endpoints: undefined,
      finalBackup,
      log: silentLog,
      sleep: () => Promise.resolve(),
      promoteRetry: { attempts: 3, delayMs: 1 },
    };
    return { order, deps, finalBackup };
  }

  it('promotes the learner once it has caught up, then removes the leaving member like any other', async () => {
    const { order, deps, finalBackup } = world(2);
    const outcome = await removeTerminatingMember(leaving, deps);
    expect(order).toEqual(['heartbeat', 'promote 2', 'promote 2', 'promote 2', 'move -> 2', 'remove 1', 'complete']);
    expect(outcome).toMatchObject({ kind: 'completed', removal: 'removed', plan: { kind: 'remove', memberId: '1' } });
    expect(finalBackup).not.toHaveBeenCalled();
  });

  it('reads the membership through the leaving member too: the others are a learner, which cannot answer for the cluster', async () => {
    const { order, deps } = world(1, { learnersRefuse: true });
    const outcome = await removeTerminatingMember(leaving, deps);
    expect(order).toEqual(['heartbeat', 'promote 2', 'promote 2', 'move -> 2', 'remove 1', 'complete']);
    expect(outcome).toMatchObject({ kind: 'completed', removal: 'removed', plan: { kind: 'remove', memberId: '1' } });
  });

  it("on the queue's last delivery, with still no learner ready, backs the last voter up and leaves the action to the backup", async () => {
    const { order, deps, finalBackup } = world(99);
    const outcome = await removeTerminatingMember(leaving, { ...deps, lastDelivery: true });
    expect(order).toEqual(['heartbeat', 'promote 2', 'promote 2', 'promote 2']);
    expect(outcome).toMatchObject({ kind: 'final-backup-started', plan: { kind: 'keep-last-voter', memberId: '1' } });
    expect(finalBackup).toHaveBeenCalledOnce();
  });

  it('keeps the instance waiting (heartbeat, retryable error) while no learner is ready: never lets the last voter go', async () => {
    const { order, deps, finalBackup } = world(99);
    await expect(removeTerminatingMember(leaving, deps)).rejects.toMatchObject({ retryable: true, message: expect.stringMatching(/learner/) as unknown });
    expect(order).toEqual(['heartbeat', 'promote 2', 'promote 2', 'promote 2', 'heartbeat']);
    expect(finalBackup).not.toHaveBeenCalled();
  });
});
