import { describe, expect, it } from 'vitest';
import { planAfterCompaction, planMaintenance, type DefragPolicy, type SpaceStatus } from '../../core/domain/maintenance.js';
import type { Member } from '../../core/domain/members.js';

const MiB = 1024 ** 2;
const policy: DefragPolicy = { minFreeRatio: 0.5, minFreeBytes: 64 * MiB, recoverBelowRatio: 0.8 };
const member = (id: string, isLearner = false): Member => ({ id, name: `i-${id}`, peerUrls: [`http://${id}:2380`], clientUrls: [`http://${id}:2379`], isLearner });
const status = (id: string, dbMiB: number, inUseMiB: number, leader = '1', revision = '100'): SpaceStatus => ({
  memberId: id,
  endpoint: `http://${id}:2379`,
  leaderId: leader,
  revision,
  dbSize: dbMiB * MiB,
  dbSizeInUse: inUseMiB * MiB,
  isLearner: false,
});
const three = [member('1'), member('2'), member('3')];

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
    const plan = planMaintenance({ members: three, statuses, alarms: [], policy });
    expect(plan.action).toBe(want.action);
    if (plan.action !== 'defragment') throw new Error(plan.action);
    expect({ action: plan.action, memberId: plan.member.memberId, moveLeaderTo: plan.moveLeaderTo }).toEqual(want);
    expect(plan.reason).toMatch(/MiB/);
  });

  it.each([
    { name: 'under half the file free', statuses: [status('1', 400, 210), status('2', 400, 210), status('3', 400, 210)], reason: 'nothing-to-reclaim' },
    { name: 'half free, but too little to matter', statuses: [status('1', 100, 40), status('2', 100, 40), status('3', 100, 40)], reason: 'nothing-to-reclaim' },
    { name: 'a member did not answer Status', statuses: [status('1', 800, 100), status('2', 800, 100)], reason: 'not-every-member-answered' },
  ])('skips: $name', ({ statuses, reason }) => {
    const plan = planMaintenance({ members: three, statuses, alarms: [], policy });
    expect(plan).toMatchObject({ action: 'skip', reason });
  });

  it('skips while a learner catches up (the membership is changing)', () => {
    const members = [...three, member('4', true)];
    const statuses = [status('1', 800, 100), status('2', 800, 100), status('3', 800, 100), status('4', 800, 100)];
    expect(planMaintenance({ members, statuses, alarms: [], policy })).toMatchObject({ action: 'skip', reason: 'membership-changing' });
  });

  it('does nothing at all while a CORRUPT alarm is raised, not even a NOSPACE recovery', () => {
    const statuses = [status('1', 800, 100), status('2', 800, 100), status('3', 800, 100)];
    const alarms = [
      { memberId: '2', alarm: 'CORRUPT' },
      { memberId: '1', alarm: 'NOSPACE' },
    ];
    expect(planMaintenance({ members: three, statuses, alarms, policy })).toMatchObject({ action: 'skip', reason: 'corrupt-alarm' });
  });

  it('recovers from NOSPACE by compacting to the newest revision any member reports, even with nothing fragmented', () => {
    const statuses = [status('1', 100, 100, '1', '500'), status('2', 100, 100, '1', '498'), status('3', 100, 100, '1', '501')];
    const plan = planMaintenance({ members: three, statuses, alarms: [{ memberId: '1', alarm: 'NOSPACE' }], policy });
    expect(plan).toMatchObject({ action: 'recover-space', revision: '501' });
  });

  it('does not recover from NOSPACE while a member is silent (it could not be defragmented)', () => {
    const plan = planMaintenance({ members: three, statuses: [status('1', 100, 100), status('2', 100, 100)], alarms: [{ memberId: '1', alarm: 'NOSPACE' }], policy });
    expect(plan).toMatchObject({ action: 'skip', reason: 'not-every-member-answered' });
  });
});

describe('planAfterCompaction: defragment everyone and disarm, or admit the cluster is full', () => {
  const quota = 1000 * MiB;
  it('compaction freed enough: every member, followers first and the leader last', () => {
    const plan = planAfterCompaction([status('1', 1000, 200), status('2', 1000, 200), status('3', 1000, 150)], quota, policy);
    expect(plan.action).toBe('defragment-all');
    if (plan.action !== 'defragment-all') throw new Error(plan.action);
    expect(plan.order.map((s) => s.memberId)).toEqual(['2', '3', '1']);
  });

  it('judges by the member that applied the compaction: one still behind only looks fuller', () => {
    const plan = planAfterCompaction([status('1', 1000, 990), status('2', 1000, 200), status('3', 1000, 210)], quota, policy);
    expect(plan.action).toBe('defragment-all');
  });

  it.each([
    { name: 'the data in use is over 80% of the quota', inUse: 850 },
    { name: 'exactly at the threshold', inUse: 800 },
  ])('full of live data: $name', ({ inUse }) => {
    const plan = planAfterCompaction([status('1', 1000, inUse), status('2', 1000, inUse + 10), status('3', 1000, inUse)], quota, policy);
    expect(plan).toMatchObject({ action: 'full-of-live-data', inUseBytes: inUse * MiB });
    if (plan.action === 'full-of-live-data') expect(plan.reason).toMatch(/delete data or raise the quota/);
  });
});
