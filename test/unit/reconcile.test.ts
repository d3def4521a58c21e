import { describe, expect, it } from 'vitest';
import type { GroupInstance } from '../../core/domain/instances.js';
import type { Member } from '../../core/domain/members.js';
import type { AgentRegistration } from '../../core/domain/election.js';
import { cutOffMember, parseTransitionTime, planReconcile, type InstanceFact } from '../../core/domain/reconcile.js';

const m = (id: string, name: string, ip: string, isLearner = false): Member => ({ id, name, peerUrls: [`http://${ip}:2380`], clientUrls: [`http://${ip}:2379`], isLearner });
const inst = (instanceId: string, privateIp: string, lifecycleState = 'InService'): GroupInstance => ({ instanceId, privateIp, lifecycleState, healthStatus: 'Healthy', availabilityZone: 'a' });
const NOW = Date.parse('2026-11-26T12:00:00Z');
const MIN = 60_000;
const a = m('1', 'i-a', '10.0.0.1');
const b = m('2', 'i-b', '10.0.0.2');
const c = m('3', 'i-c', '10.0.0.3');
const group = [inst('i-a', '10.0.0.1'), inst('i-b', '10.0.0.2')];
const plan = (members: Member[], healthy: string[], facts: Record<string, InstanceFact>, instances = group) =>
  planReconcile({ members, instances, healthyMemberIds: new Set(healthy), facts: new Map(Object.entries(facts)), now: NOW, graceMs: 10 * MIN });

describe('parseTransitionTime', () => {
  it.each([
    ['User initiated (2026-11-26 11:00:00 GMT)', Date.parse('2026-11-26T11:00:00Z')],
    ['User initiated (2026-11-26 11:00:00 UTC)', Date.parse('2026-11-26T11:00:00Z')],
    ['', undefined],
    [undefined, undefined],
  ])('%s', (reason, expected) => {
    expect(parseTransitionTime(reason)).toBe(expected);
  });
});

describe('planReconcile', () => {
  it('removes a member whose instance terminated longer ago than the grace period', () => {
    const out = plan([a, b, c], ['1', '2'], { 'i-c': { state: 'terminated', since: NOW - 11 * MIN } });
    expect(out.remove).toEqual({ member: c, reason: 'instance-gone' });
    expect(out.kept).toEqual([]);
  });

  it('keeps it within the grace period', () => {
    expect(plan([a, b, c], ['1', '2'], { 'i-c': { state: 'terminated', since: NOW - 9 * MIN } })).toMatchObject({
      remove: undefined,
      kept: [{ member: c, reason: 'within-grace-period' }],
    });
  });

  it('removes a member whose instance EC2 no longer knows (gone long ago)', () => {
    expect(plan([a, b, c], ['1', '2'], {}).remove).toEqual({ member: c, reason: 'instance-gone' });
  });

  it('keeps a silent member whose instance runs outside the group (detached, standby): not ours to judge', () => {
    expect(plan([a, b, c], ['1', '2'], { 'i-c': { state: 'running', since: undefined } }).kept).toEqual([
      { member: c, reason: 'instance-running-outside-group' },
    ]);
  });

  it('refuses a removal that would leave the healthy voters without quorum', () => {
    // a healthy, b down but still in the group, c gone from the group and silent
    expect(plan([a, b, c], ['1'], { 'i-c': { state: 'terminated', since: NOW - 60 * MIN } })).toMatchObject({
      remove: undefined,
      kept: [{ member: c, reason: 'removal-would-break-quorum' }],
    });
  });

  it.each<[string, Record<string, InstanceFact>]>([
    ['EC2 does not know its instance (a member added by hand, or named after an instance EC2 forgot)', {}],
    ['EC2 says its instance terminated (a member name reused, a stale describe)', { 'i-c': { state: 'terminated', since: NOW - 60 * MIN } }],
  ])('never removes a member that answers Status: %s', (_name, facts) => {
    expect(plan([a, b, c], ['1', '2', '3'], facts)).toMatchObject({ remove: undefined, kept: [{ member: c, reason: 'member-answers' }] });
  });

  it('removes at most one member per run', () => {
    const d = m('4', 'i-d', '10.0.0.4');
    const e = m('5', 'i-e', '10.0.0.5');
    const out = plan([a, b, m('6', 'i-f', '10.0.0.6'), d, e], ['1', '2', '6'], {}, [...group, inst('i-f', '10.0.0.6')]);
    expect(out.remove).toEqual({ member: d, reason: 'instance-gone' });
    expect(out.kept).toEqual([{ member: e, reason: 'one-removal-per-run' }]);
  });

  it('removes an unstarted learner that no instance of the group owns, and promotes learners of active instances', () => {
    const ghost = m('7', '', '10.0.0.9', true);
    const stranded = m('8', 'i-b', '10.0.0.2', true);
    const out = plan([a, stranded, ghost], ['1'], {});
    expect(out.remove).toEqual({ member: ghost, reason: 'unstarted-learner-without-instance' });
    expect(out.promote).toEqual([stranded]);
  });
});

describe('cutOffMember', () => {
  const members = [a, b, c];
  const trio = [inst('i-a', '10.0.0.1'), inst('i-b', '10.0.0.2'), inst('i-c', '10.0.0.3')];
  const GRACE = 5 * MIN;
  const FRESH = 30_000;
  const reg = (instanceId: string, memberId: string, at: number, quorum: boolean, since: number): AgentRegistration => ({
    instanceId,
    hasData: true,
    at,
    serving: { clusterId: '9', memberId, quorum, since },
  });
  const cut = (healthy: string[], registrations: AgentRegistration[], instances = trio, ms = members) =>
    cutOffMember({ members: ms, instances, healthyMemberIds: new Set(healthy), registrations, now: NOW, graceMs: GRACE, freshMs: FRESH });
  const healthyRest = [reg('i-a', '1', NOW, true, NOW - 60 * MIN), reg('i-b', '2', NOW, true, NOW - 60 * MIN)];

  it('names the member whose agent says, recently, that its etcd has had no quorum for longer than the grace period', () => {
    expect(cut(['1', '2'], [...healthyRest, reg('i-c', '3', NOW - 1000, false, NOW - 6 * MIN)])).toMatchObject({
      member: c,
      instance: { instanceId: 'i-c' },
      reason: 'cut-off-from-quorum',
    });
  });

  it.each<[string, string[], AgentRegistration[], GroupInstance[]]>([
    ['no quorum for less than the grace period (an election, a restart)', ['1', '2'], [...healthyRest, reg('i-c', '3', NOW, false, NOW - 4 * MIN)], trio],
    ['it answers the quorum side (it is slow, not cut off)', ['1', '2', '3'], [...healthyRest, reg('i-c', '3', NOW, false, NOW - 60 * MIN)], trio],
    ['its agent never served (the launch hook judges it)', ['1', '2'], [...healthyRest, { instanceId: 'i-c', hasData: true, at: NOW - 60 * MIN }], trio],
    ['its registration names another member (an older incarnation)', ['1', '2'], [...healthyRest, reg('i-c', '33', NOW, false, NOW - 60 * MIN)], trio],
    [
      'another instance is already being replaced (one at a time)',
      ['1', '2'],
      [...healthyRest, reg('i-c', '3', NOW, false, NOW - 60 * MIN)],
      [inst('i-a', '10.0.0.1'), { ...inst('i-b', '10.0.0.2'), healthStatus: 'Unhealthy' }, inst('i-c', '10.0.0.3')],
    ],
    [
      'another instance is terminating (one at a time)',
      ['1', '2'],
      [...healthyRest, reg('i-c', '3', NOW, false, NOW - 60 * MIN)],
      [inst('i-a', '10.0.0.1'), inst('i-b', '10.0.0.2', 'Terminating:Wait'), inst('i-c', '10.0.0.3')],
    ],
    ['the members that answer would not keep a quorum without it', ['1'], [...healthyRest, reg('i-c', '3', NOW, false, NOW - 60 * MIN)], trio],
    ['its instance is still launching', ['1', '2'], [...healthyRest, reg('i-c', '3', NOW, false, NOW - 60 * MIN)], [inst('i-a', '10.0.0.1'), inst('i-b', '10.0.0.2'), inst('i-c', '10.0.0.3', 'Pending:Wait')]],
  ])('names none when %s', (_name, healthy, registrations, instances) => {
    expect(cut(healthy, registrations, instances)).toBeUndefined();
  });

  it('names a member whose agent has been silent for the whole grace period too (a hung or isolated host)', () => {
    expect(cut(['1', '2'], [...healthyRest, reg('i-c', '3', NOW - 6 * MIN, true, NOW - 60 * MIN)])).toMatchObject({ member: c, reason: 'agent-silent' });
    expect(cut(['1', '2'], [...healthyRest, reg('i-c', '3', NOW - 4 * MIN, true, NOW - 60 * MIN)])).toBeUndefined();
  });

  it('names the one cut off longest when several are, each only while the rest keeps a quorum', () => {
    const five = [a, b, c, m('4', 'i-d', '10.0.0.4'), m('5', 'i-e', '10.0.0.5')];
    const group5 = [...trio, inst('i-d', '10.0.0.4'), inst('i-e', '10.0.0.5')];
    const regs = [...healthyRest, reg('i-c', '3', NOW, true, NOW), reg('i-d', '4', NOW, false, NOW - 7 * MIN), reg('i-e', '5', NOW, false, NOW - 9 * MIN)];
    expect(cut(['1', '2', '3'], regs, group5, five)).toMatchObject({ member: { id: '5' } });
  });
});
