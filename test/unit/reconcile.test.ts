import { describe, expect, it } from 'vitest';
import type { GroupInstance } from '../../core/domain/instances.js';
import type { Member } from '../../core/domain/members.js';
import { parseTransitionTime, planReconcile, type InstanceFact } from '../../core/domain/reconcile.js';

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
