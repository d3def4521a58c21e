import { describe, expect, it } from 'vitest';
import { planAfterCompaction, planMaintenance, type DefragPolicy, type SpaceStatus } from '../../core/domain/maintenance.js';
import type { GroupInstance } from '../../core/domain/instances.js';
import type { Member } from '../../core/domain/members.js';

const MiB = 1024 ** 2;
const policy: DefragPolicy = { minFreeRatio: 0.5, minFreeBytes: 64 * MiB, recoverBelowRatio: 0.8 };
const member = (id: string, isLearner = false): Member => ({ id, name: `i-${id}`, peerUrls: [`http://${id}:2380`], clientUrls: [`http://${id}:2379`], isLearner });
const status = (id: string, dbMiB: number, inUseMiB: number, leader = '1', revision = '100', raftIndex = '500'): SpaceStatus => ({
  memberId: id,
  endpoint: `http://${id}:2379`,
  leaderId: leader,
  revision,
  raftIndex,
  dbSize: dbMiB * MiB,
  dbSizeInUse: inUseMiB * MiB,
  isLearner: false,
});
const three = [member('1'), member('2'), member('3')];
const instance = (id: string, lifecycleState = 'InService', healthStatus = 'Healthy'): GroupInstance => ({
  instanceId: `i-${id}`,
  lifecycleState,
  healthStatus,
  availabilityZone: 'us-east-1a',
  privateIp: id,
});
const atRest = [instance('1'), instance('2'), instance('3')];
const plan = (input: Partial<Parameters<typeof planMaintenance>[0]> & Pick<Parameters<typeof planMaintenance>[0], 'statuses'>) =>
  planMaintenance({ members: three, instances: atRest, alarms: [], defragInFlight: [], policy, ...input });

describe('planMaintenance: when a member is defragmented, and which', () => {
  it.each([
    {
      name: 'a follower with half its file free: that follower',
      statuses: [status('1', 400, 100), status('2', 400, 100), status('3', 100, 90)],
      want: { action: 'defragment', memberId: '2', moveLeaderTo: undefined },
    },
    {
      name: 'the most fragmented follower first, whatever the order',
      statuses: [status('1', 900, 100), status('2', 300, 100), status('3', 800, 100)],
      want: { action: 'defragment', memberId: '3', moveLeaderTo: undefined },
    },
    {
      name: 'only the leader is fragmented: it, after its leadership moves to a follower',
      statuses: [status('1', 800, 100), status('2', 110, 100), status('3', 110, 100)],
      want: { action: 'defragment', memberId: '1', moveLeaderTo: '2' },
    },
    {
      name: 'the leader is more fragmented than a follower: the follower first (the leader on a later run)',
      statuses: [status('1', 2000, 100), status('2', 300, 100), status('3', 100, 100)],
      want: { action: 'defragment', memberId: '2', moveLeaderTo: undefined },
    },
  ])('$name', ({ statuses, want }) => {
    const p = plan({ statuses });
    expect(p.action).toBe(want.action);
    if (p.action !== 'defragment') throw new Error(p.action);
    expect({ action: p.action, memberId: p.member.memberId, moveLeaderTo: p.moveLeaderTo }).toEqual(want);
    expect(p.reason).toMatch(/MiB/);
  });

  it.each([
    { name: 'under half the file free', statuses: [status('1', 400, 210), status('2', 400, 210), status('3', 400, 210)], reason: 'nothing-to-reclaim' },
    { name: 'half free, but too little to matter', statuses: [status('1', 100, 40), status('2', 100, 40), status('3', 100, 40)], reason: 'nothing-to-reclaim' },
    { name: 'a member did not answer Status', statuses: [status('1', 800, 100), status('2', 800, 100)], reason: 'not-every-member-answered' },
  ])('skips: $name', ({ statuses, reason }) => {
    expect(plan({ statuses })).toMatchObject({ action: 'skip', reason });
  });

  it('skips while a learner catches up (the membership is changing)', () => {
    const members = [...three, member('4', true)];
    const statuses = [status('1', 800, 100), status('2', 800, 100), status('3', 800, 100), status('4', 800, 100)];
    expect(plan({ members, statuses, instances: [...atRest, instance('4')] })).toMatchObject({ action: 'skip', reason: 'membership-changing' });
  });

  it('does nothing at all while a CORRUPT alarm is raised, not even a NOSPACE recovery', () => {
    const statuses = [status('1', 800, 100), status('2', 800, 100), status('3', 800, 100)];
    const alarms = [
      { memberId: '2', alarm: 'CORRUPT' },
      { memberId: '1', alarm: 'NOSPACE' },
    ];
    expect(plan({ statuses, alarms })).toMatchObject({ action: 'skip', reason: 'corrupt-alarm' });
  });

  it('recovers from NOSPACE by compacting to the newest revision any member reports, even with nothing fragmented', () => {
    const statuses = [status('1', 100, 100, '1', '500'), status('2', 100, 100, '1', '498'), status('3', 100, 100, '1', '501')];
    expect(plan({ statuses, alarms: [{ memberId: '1', alarm: 'NOSPACE' }] })).toMatchObject({ action: 'recover-space', revision: '501' });
  });

  it('does not recover from NOSPACE while a member is silent (it could not be defragmented)', () => {
    const p = plan({ statuses: [status('1', 100, 100), status('2', 100, 100)], alarms: [{ memberId: '1', alarm: 'NOSPACE' }] });
    expect(p).toMatchObject({ action: 'skip', reason: 'not-every-member-answered' });
  });

  const fragmented = [status('1', 800, 100), status('2', 800, 100), status('3', 800, 100)];
  it.each([
    { name: 'an instance terminating (its member still listed, about to be removed)', instances: [instance('1'), instance('2', 'Terminating:Wait'), instance('3')] },
    { name: 'an instance unhealthy', instances: [instance('1'), instance('2', 'InService', 'Unhealthy'), instance('3')] },
    { name: 'an instance launching (its member about to be added)', instances: [...atRest, instance('4', 'Pending:Wait')] },
    { name: 'an instance in service without a member yet', instances: [...atRest, instance('4')] },
  ])('skips while the group changes: $name', ({ instances }) => {
    expect(plan({ statuses: fragmented, instances })).toMatchObject({ action: 'skip', reason: 'group-changing' });
  });

  it('recovers from NOSPACE while the group changes: writes are refused already', () => {
    const instances = [instance('1'), instance('2', 'Terminating:Wait'), instance('3')];
    expect(plan({ statuses: fragmented, instances, alarms: [{ memberId: '1', alarm: 'NOSPACE' }] })).toMatchObject({ action: 'recover-space' });
  });

  it('never starts a defragmentation while one runs on any member (another run, or one etcd went on with after its deadline)', () => {
    expect(plan({ statuses: fragmented, defragInFlight: ['3'] })).toMatchObject({ action: 'skip', reason: 'defrag-in-progress' });
    expect(plan({ statuses: fragmented, defragInFlight: ['2'], alarms: [{ memberId: '1', alarm: 'NOSPACE' }] })).toMatchObject({
      action: 'skip',
      reason: 'defrag-in-progress',
    });
  });

  it('hands leadership to the follower furthest along its log', () => {
    const p = plan({ statuses: [status('1', 800, 100, '1', '100', '900'), status('2', 110, 100, '1', '100', '880'), status('3', 110, 100, '1', '100', '899')] });
    expect(p).toMatchObject({ action: 'defragment', moveLeaderTo: '3' });
  });
});

describe('planAfterCompaction: defragment everyone and disarm, or admit the cluster is full', () => {
  const quota = 1000 * MiB;
  it('compaction freed enough: every member, followers first and the leader last', () => {
    const p = planAfterCompaction([status('1', 1000, 200), status('2', 1000, 200), status('3', 1000, 150)], quota, policy);
    expect(p.action).toBe('defragment-all');
    if (p.action !== 'defragment-all') throw new Error(p.action);
    expect(p.order.map((s) => s.memberId)).toEqual(['2', '3', '1']);
  });

  it('a run cut short: the next one takes only the files still over the limit, not the first members again', () => {
    const p = planAfterCompaction([status('1', 1000, 200), status('2', 210, 200), status('3', 1000, 200)], quota, policy);
    if (p.action !== 'defragment-all') throw new Error(p.action);
    expect(p.order.map((s) => s.memberId)).toEqual(['3', '1']);
    const done = planAfterCompaction([status('1', 210, 200), status('2', 210, 200), status('3', 210, 200)], quota, policy);
    expect(done).toMatchObject({ action: 'defragment-all', order: [] });
  });

  it('judges by the member that applied the compaction: one still behind only looks fuller', () => {
    expect(planAfterCompaction([status('1', 1000, 990), status('2', 1000, 200), status('3', 1000, 210)], quota, policy).action).toBe('defragment-all');
  });

  it.each([
    { name: 'the data in use is over 80% of the quota', inUse: 850 },
    { name: 'exactly at the threshold', inUse: 800 },
  ])('full of live data: $name', ({ inUse }) => {
    const p = planAfterCompaction([status('1', 1000, inUse), status('2', 1000, inUse + 10), status('3', 1000, inUse)], quota, policy);
    expect(p).toMatchObject({ action: 'full-of-live-data', inUseBytes: inUse * MiB });
    if (p.action === 'full-of-live-data') expect(p.reason).toMatch(/delete data or raise the quota/);
  });
});
