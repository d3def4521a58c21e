import { describe, expect, it } from 'vitest';
import { decideBootstrap } from '../../core/domain/bootstrap.js';
import { seedPrecondition } from '../../core/domain/election.js';
import { isLeaving, runningPeers } from '../../core/domain/instances.js';
import { finalBackupRequest } from '../../core/domain/lifecycle-events.js';
import { instancesWithoutAgent } from '../../core/domain/reconcile.js';
import { silentLog } from '../../core/logger.js';
import type { EtcdCluster, EtcdLocalView, InstanceLifecycle, MemberStatus, StackSignals } from '../../core/ports.js';
import { abandonLaunch, finishLaunch, reportHealth, type LaunchDeps } from '../../core/use-cases/launch.js';
import { groupInstance, member } from '../support/fixtures.js';

/** A clock the fakes advance: every sleep moves it on, so deadlines pass without waiting. */
function fakes(options: {
  state: string | undefined;
  votingAfter?: number;
  launchedAt?: number;
  own?: 'removed-learner' | 'voter' | 'none';
  othersHoldQuorum?: boolean;
  completeAnswer?: 'completed' | 'no-action';
  failingStateReads?: number;
}) {
  const events: string[] = [];
  let now = 1_000_000;
  let checks = 0;
  let stateReads = 0;
  const lifecycle: InstanceLifecycle = {
    state: () => {
      stateReads += 1;
      if (stateReads <= (options.failingStateReads ?? 0)) return Promise.reject(new Error('Rate exceeded'));
      return Promise.resolve(options.state);
    },
    completeLaunch: (_id, result) => {
      events.push(`complete ${result}`);
      return Promise.resolve(options.completeAnswer ?? 'completed');
    },
    heartbeatLaunch: () => {
      events.push('heartbeat');
      return Promise.resolve();
    },
    setUnhealthy: () => {
      events.push('unhealthy');
      return Promise.resolve();
    },
  };
  const signals: StackSignals = {
    signal: (_id, status) => {
      events.push(`signal ${status}`);
      return Promise.resolve('sent');
    },
  };
  const status = (isLearner: boolean): MemberStatus =>
    ({ endpoint: 'x', memberId: '1', clusterId: 'c', leaderId: '2', revision: '1', raftIndex: '1', raftTerm: '1', version: '3.6.16', dbSize: 1, dbSizeInUse: 1, isLearner });
  const local = {
    status: () => {
      checks += 1;
      return Promise.resolve(status(options.votingAfter === undefined || checks <= options.votingAfter));
    },
    hasQuorum: () => Promise.resolve(true),
    close: () => undefined,
  } as unknown as EtcdCluster & EtcdLocalView;
  const deps: LaunchDeps = {
    instanceId: 'i-new',
    selfUrl: 'http://10.0.0.9:2379',
    launchedAt: options.launchedAt ?? now,
    lifecycle,
    signals,
    openLocal: () => local,
    removeOwnMember: () => {
      const own = options.own ?? 'removed-learner';
      if (own === 'removed-learner') events.push('remove own learner');
      return Promise.resolve(own);
    },
    othersHoldQuorum: () => Promise.resolve(options.othersHoldQuorum ?? true),
    now: () => now,
    sleep: (ms) => {
      now += ms;
      return Promise.resolve();
    },
    log: silentLog,
    pollMs: 1000,
    heartbeatMs: 10_000,
    timeoutMs: 60_000,
    stopped: () => false,
  };
  return { deps, events };
}

describe('finishLaunch', () => {
  it('heartbeats the hook at once and while the learner catches up, then CONTINUE and a SUCCESS signal once it votes', async () => {
    const { deps, events } = fakes({ state: 'Pending:Wait', votingAfter: 25 });
    const outcome = await finishLaunch(deps);
    expect(outcome).toMatchObject({ kind: 'continued' });
    expect(events.filter((e) => e === 'heartbeat')).toHaveLength(3);
    expect(events[0]).toBe('heartbeat');
    expect(events.slice(-2)).toEqual(['complete CONTINUE', 'signal SUCCESS']);
  });

  it('retries a failed AWS call instead of giving the launch up', async () => {
    const { deps, events } = fakes({ state: 'Pending:Wait', votingAfter: 2, failingStateReads: 3 });
    expect(await finishLaunch(deps)).toMatchObject({ kind: 'continued' });
    expect(events.slice(-2)).toEqual(['complete CONTINUE', 'signal SUCCESS']);
  });

  it('signals FAILURE, not SUCCESS, when the launching action had already ended (the instance is going)', async () => {
    const { deps, events } = fakes({ state: 'Pending:Wait', votingAfter: 1, completeAnswer: 'no-action' });
    expect(await finishLaunch(deps)).toMatchObject({ kind: 'lost-launch' });
    expect(events.slice(-2)).toEqual(['complete CONTINUE', 'signal FAILURE']);
  });

  it('never abandons a member that votes by the deadline (its promotion landed meanwhile)', async () => {
    const { deps, events } = fakes({ state: 'Pending:Wait', votingAfter: 70, own: 'voter' });
    expect(await finishLaunch(deps)).toMatchObject({ kind: 'continued' });
    expect(events).not.toContain('complete ABANDON');
  });

  it('gives the launch up at the deadline: its learner removed, ABANDON, a FAILURE signal (the rollout stops)', async () => {
    const { deps, events } = fakes({ state: 'Pending:Wait', votingAfter: Number.POSITIVE_INFINITY });
    const outcome = await finishLaunch(deps);
    expect(outcome).toMatchObject({ kind: 'abandoned', reason: 'not a voting member 60 s after launch' });
    expect(events.slice(-3)).toEqual(['remove own learner', 'complete ABANDON', 'signal FAILURE']);
  });

  it('counts the deadline from the instance launch, not from the agent start (a restarted agent gets no extra time)', async () => {
    const { deps, events } = fakes({ state: 'Pending:Wait', votingAfter: Number.POSITIVE_INFINITY, launchedAt: 1_000_000 - 59_500 });
    await finishLaunch(deps);
    expect(events.filter((e) => e === 'heartbeat')).toHaveLength(1);
    expect(events).toContain('complete ABANDON');
  });

  it('an instance already in service (an agent restart) signals nothing: it is no successor in a rollout', async () => {
    const ready = fakes({ state: 'InService', votingAfter: 0 });
    expect(await finishLaunch(ready.deps)).toMatchObject({ kind: 'not-launching', state: 'InService' });
    expect(ready.events).toEqual([]);
  });
});

describe('abandonLaunch and reportHealth', () => {
  it('abandon only while launching', async () => {
    const launching = fakes({ state: 'Pending:Wait' });
    expect(await abandonLaunch(launching.deps, 'refused')).toBe(true);
    expect(launching.events).toEqual(['remove own learner', 'complete ABANDON', 'signal FAILURE']);
    const inService = fakes({ state: 'InService' });
    expect(await abandonLaunch(inService.deps, 'refused')).toBe(false);
    expect(inService.events).toEqual([]);
  });

  it('an unhealthy verdict leaves an instance in service alone while the others hold no quorum without it (a cause shared by all)', async () => {
    const f = fakes({ state: 'InService', othersHoldQuorum: false });
    expect(await reportHealth({ kind: 'unhealthy', reason: 'etcd-crash-loop', detail: 'x' }, f.deps)).toBe('none');
    expect(f.events).toEqual([]);
  });

  it('an unhealthy verdict abandons a launch, marks an instance in service unhealthy, and leaves a terminating one alone', async () => {
    const verdict = { kind: 'unhealthy', reason: 'etcd-crash-loop', detail: 'x' } as const;
    for (const [state, expected, events] of [
      ['Pending:Wait', 'abandoned', ['remove own learner', 'complete ABANDON', 'signal FAILURE']],
      ['InService', 'marked-unhealthy', ['unhealthy']],
      ['Terminating:Wait', 'none', []],
    ] as const) {
      const f = fakes({ state });
      expect(await reportHealth(verdict, f.deps)).toBe(expected);
      expect(f.events).toEqual(events);
    }
  });
});

describe('instances on their way out, and those still running', () => {
  const self = { instanceId: 'i-self', privateIp: '10.0.1.10' };
  const a = member('11', 'i-a', '10.0.1.11');
  const b = member('12', 'i-b', '10.0.1.12');
  const version = { major: 3, minor: 6, patch: 16 };
  const live = { kind: 'live', clusterId: 'C1', members: [a, b], healthyMemberIds: ['11', '12'], memberVersions: {} } as const;

  it.each(['Terminating:Wait', 'Terminating', 'Standby', 'Detaching'])('an instance in %s joins nothing and founds nothing', (state) => {
    const instances = [groupInstance('i-self', '10.0.1.10', state), groupInstance('i-a', '10.0.1.11'), groupInstance('i-b', '10.0.1.12')];
    expect(decideBootstrap({ self, local: { kind: 'none' }, probe: live, instances, etcdVersion: version })).toEqual({ kind: 'wait', reason: 'instance-leaving-group' });
    expect(decideBootstrap({ self, local: { kind: 'none' }, probe: { kind: 'silent' }, instances, etcdVersion: version })).toEqual({ kind: 'wait', reason: 'instance-leaving-group' });
    expect(isLeaving(instances[0])).toBe(true);
  });

  it('a terminating instance that still is a member restarts it (it keeps the quorum until the hook removes it)', () => {
    const mine = member('10', 'i-self', '10.0.1.10');
    const instances = [groupInstance('i-self', '10.0.1.10', 'Terminating:Wait'), groupInstance('i-a', '10.0.1.11')];
    const plan = decideBootstrap({
      self,
      local: { kind: 'member', memberId: '10', clusterId: 'C1' },
      probe: { ...live, members: [mine, a] },
      instances,
      etcdVersion: version,
    });
    expect(plan).toMatchObject({ kind: 'restart', reason: 'member-of-live-cluster' });
  });

  it('counts an instance held in Terminating:Wait as a running peer: discovery probes it, the seed election waits for it', () => {
    const instances = [groupInstance('i-self', '10.0.1.10'), groupInstance('i-old', '10.0.1.11', 'Terminating:Wait'), groupInstance('i-gone', '10.0.1.12', 'Terminating:Proceed')];
    expect(runningPeers(instances).map((i) => i.instanceId)).toEqual(['i-self', 'i-old']);
    expect(seedPrecondition('i-self', instances, [], 1000, 500)).toEqual({ ok: false, reason: 'peer-not-registered', instanceId: 'i-old' });
    const withData = [{ instanceId: 'i-old', hasData: true, at: 1000 }];
    expect(seedPrecondition('i-self', instances, withData, 1000, 500)).toEqual({ ok: false, reason: 'peer-has-data', instanceId: 'i-old' });
  });
});

describe('instancesWithoutAgent', () => {
  const MIN = 60_000;
  const at = (id: string, ip: string, launchedAt: number, state = 'InService') => ({ ...groupInstance(id, ip, state), launchedAt });
  const NOW = 100 * MIN;

  it('finds the longest-running instance past the grace period with no registration and no member, one per run', () => {
    const instances = [at('i-new', '10.0.0.1', NOW - MIN), at('i-old', '10.0.0.2', NOW - 30 * MIN), at('i-older', '10.0.0.3', NOW - 40 * MIN), at('i-ok', '10.0.0.4', NOW - 50 * MIN)];
    const found = instancesWithoutAgent({ instances, registrations: [{ instanceId: 'i-ok', hasData: true, at: 0 }], members: [], now: NOW, graceMs: 15 * MIN });
    expect(found.map((i) => i.instanceId)).toEqual(['i-older']);
  });

  it('never an instance whose member is in the cluster (a lost registration says nothing about its data)', () => {
    const instances = [at('i-member', '10.0.0.1', NOW - 60 * MIN)];
    expect(instancesWithoutAgent({ instances, registrations: [], members: [member('1', 'i-member', '10.0.0.1')], now: NOW, graceMs: MIN })).toEqual([]);
  });

  it('also while launching, without a live cluster to ask', () => {
    const instances = [at('i-stuck', '10.0.0.1', NOW - 60 * MIN, 'Pending:Wait')];
    expect(instancesWithoutAgent({ instances, registrations: [], members: undefined, now: NOW, graceMs: MIN }).map((i) => i.instanceId)).toEqual(['i-stuck']);
  });
});

describe('finalBackupRequest', () => {
  it('reads the notice the lifecycle function hands the backup function, and nothing else', () => {
    const notice = { groupName: 'g', hookName: 'etcd-terminate', instanceId: 'i-0abc', token: 't' };
    expect(finalBackupRequest({ finalBackupFor: notice })).toEqual({ ...notice, time: undefined });
    expect(finalBackupRequest({ force: true })).toBeUndefined();
    expect(finalBackupRequest({ finalBackupFor: { ...notice, instanceId: 'nope' } })).toBeUndefined();
    expect(finalBackupRequest(undefined)).toBeUndefined();
  });
});
