import { describe, expect, it } from 'vitest';
import { decideBootstrap, type Probe } from '../../core/domain/bootstrap.js';
import {
  checkJoinVersion,
  checkLocalVersion,
  checkRestoreVersion,
  parseEtcdVersion,
  upgradePath,
  type EtcdVersion,
  type JoinVersionCheck,
} from '../../core/domain/versions.js';
import { groupInstance, member } from '../support/fixtures.js';

const v = (text: string): EtcdVersion => {
  const parsed = parseEtcdVersion(text);
  if (!parsed) throw new Error(`bad version ${text}`);
  return parsed;
};
const members = (...versions: string[]) => versions.map((version, i) => ({ name: `i-${i}`, version: v(version) }));

describe('parseEtcdVersion', () => {
  it.each([
    ['3.6.16', { major: 3, minor: 6, patch: 16 }],
    ['v3.7.3', { major: 3, minor: 7, patch: 3 }],
    ['3.7.0-rc.0', { major: 3, minor: 7, patch: 0 }],
    ['etcd Version: 3.5.35\nGit SHA: Not provided\nGo Version: go1.26.8', { major: 3, minor: 5, patch: 35 }],
    ['etcdutl version: 3.6.16\nAPI version: 3.6', { major: 3, minor: 6, patch: 16 }],
    ['not a version', undefined],
    ['3.6', undefined],
  ])('%j', (text, expected) => {
    expect(parseEtcdVersion(text)).toEqual(expected);
  });
});

describe('checkLocalVersion', () => {
  it.each<[string, { ok: boolean; reason: string }]>([
    ['3.4.23', { ok: false, reason: 'too-old' }],
    ['3.5.0', { ok: true, reason: 'tested' }],
    ['3.6.16', { ok: true, reason: 'tested' }],
    ['3.7.3', { ok: true, reason: 'tested' }],
    ['3.8.0', { ok: true, reason: 'newer-than-tested' }],
  ])('etcd %s', (version, expected) => {
    expect(checkLocalVersion(v(version))).toMatchObject(expected);
  });

  it('says how to get from 3.4 to a supported release', () => {
    const check = checkLocalVersion(v('3.4.23'));
    expect(check.ok ? '' : check.detail).toContain('3.4 → 3.5');
  });
});

describe('checkJoinVersion: etcd upgrades one minor at a time, from a recent enough patch, never backwards', () => {
  it.each<[string, string, string[], JoinVersionCheck['reason']]>([
    ['same release', '3.6.16', ['3.6.16', '3.6.16', '3.6.16'], 'same-minor'],
    ['another patch of the same minor', '3.6.16', ['3.6.12', '3.6.15'], 'same-minor'],
    ['the first member of the next minor in a rolling upgrade', '3.7.3', ['3.6.16', '3.6.16', '3.6.16'], 'one-minor-upgrade'],
    ['the last member of the next minor', '3.7.3', ['3.7.3', '3.7.3', '3.6.16'], 'one-minor-upgrade'],
    ['3.5.32 is new enough for 3.6', '3.6.16', ['3.5.32', '3.5.35'], 'one-minor-upgrade'],
    ['3.6.11 is new enough for 3.7', '3.7.3', ['3.6.11'], 'one-minor-upgrade'],
    ['the old minor again while some members run the next (a rollout rolled back)', '3.6.16', ['3.6.16', '3.7.3', '3.7.3'], 'rollback-within-cluster-version'],
    ['skipping a minor: 3.5 members, a 3.7 instance', '3.7.3', ['3.5.35', '3.5.35', '3.5.35'], 'minor-skip'],
    ['skipping a minor behind a half-done rollout', '3.7.3', ['3.5.35', '3.6.16', '3.6.16'], 'minor-skip'],
    ['a downgrade: every member runs a newer minor', '3.6.16', ['3.7.3', '3.7.3', '3.7.3'], 'downgrade'],
    ['a downgrade by two minors', '3.5.35', ['3.7.3'], 'downgrade'],
    ['3.5 members below 3.5.32 cannot take a 3.6 member yet', '3.6.16', ['3.5.35', '3.5.21', '3.5.35'], 'upgrade-source-too-old'],
    ['3.6 members below 3.6.11 cannot take a 3.7 member yet', '3.7.3', ['3.6.5', '3.6.16'], 'upgrade-source-too-old'],
    ['no member reported a version', '3.6.16', [], 'no-member-version-known'],
  ])('%s', (_why, local, others, reason) => {
    expect(checkJoinVersion(v(local), members(...others)).reason).toBe(reason);
  });

  it('a refusal names both versions and the supported path', () => {
    const skip = checkJoinVersion(v('3.7.3'), members('3.5.35'));
    expect(skip.ok).toBe(false);
    if (skip.ok) return;
    expect(skip.detail).toContain('3.7.3');
    expect(skip.detail).toContain('i-0 runs 3.5.35');
    expect(skip.detail).toContain('3.5 → 3.6 → 3.7');

    const old = checkJoinVersion(v('3.6.16'), members('3.5.21'));
    expect(old.ok ? '' : old.detail).toContain('3.5.32 or later');

    const down = checkJoinVersion(v('3.6.16'), members('3.7.3'));
    expect(down.ok ? '' : down.detail).toMatch(/older than every member.*3\.7/);
  });

  it('upgradePath lists every minor in between', () => {
    expect(upgradePath(v('3.4.23'), v('3.7.3'))).toBe('3.4 → 3.5 → 3.6 → 3.7');
  });
});

describe('checkRestoreVersion: older data restores on newer etcd, never the other way', () => {
  it.each<[string, string, string | undefined, string]>([
    ['same minor', '3.6.16', '3.6.0', 'same-minor'],
    ['data one minor older', '3.7.3', '3.6.0', 'older-data'],
    ['data two minors older (restores and starts, measured on 3.5 → 3.7)', '3.7.3', '3.5.0', 'older-data'],
    ['data of a newer minor (3.6 refuses to start on 3.7 data)', '3.6.16', '3.7.0', 'newer-data'],
    ['no version recorded', '3.6.16', undefined, 'version-unknown'],
  ])('%s', (_why, local, data, reason) => {
    expect(checkRestoreVersion(v(local), data === undefined ? undefined : v(data), 'k').reason).toBe(reason);
  });

  it('the refusal names the backup, both versions and what to run', () => {
    const check = checkRestoreVersion(v('3.6.16'), v('3.7.0'), 'snapshots/x.db');
    expect(check.ok ? '' : check.detail).toMatch(/snapshots\/x\.db.*3\.7.*3\.6\.16.*etcd 3\.7\.x or newer/);
  });
});

describe('decideBootstrap checks the version before joining', () => {
  const self = { instanceId: 'i-self', privateIp: '10.0.1.10' };
  const a = member('11', 'i-a', '10.0.1.11');
  const b = member('12', 'i-b', '10.0.1.12');
  const instances = [groupInstance('i-self', '10.0.1.10'), groupInstance('i-a', '10.0.1.11'), groupInstance('i-b', '10.0.1.12')];
  const probe = (versions: Record<string, string>): Probe => ({
    kind: 'live',
    clusterId: 'C1',
    members: [a, b],
    healthyMemberIds: ['11', '12'],
    memberVersions: versions,
  });

  it('refuses a version skip and changes nothing', () => {
    const plan = decideBootstrap({ self, local: { kind: 'none' }, probe: probe({ 11: '3.5.35', 12: '3.5.35' }), instances, etcdVersion: v('3.7.3') });
    expect(plan).toMatchObject({ kind: 'refuse', reason: 'version-incompatible' });
  });

  it('joins one minor up', () => {
    const plan = decideBootstrap({ self, local: { kind: 'none' }, probe: probe({ 11: '3.6.16', 12: '3.6.16' }), instances, etcdVersion: v('3.7.3') });
    expect(plan).toMatchObject({ kind: 'join', reason: 'no-local-data' });
  });

  it('restarts its own member whatever the versions (etcd itself guards a member it already is)', () => {
    const mine = member('10', 'i-self', '10.0.1.10');
    const live: Probe = { kind: 'live', clusterId: 'C1', members: [mine, a, b], healthyMemberIds: ['11', '12'], memberVersions: { 11: '3.7.3', 12: '3.7.3' } };
    const plan = decideBootstrap({ self, local: { kind: 'member', memberId: '10', clusterId: 'C1' }, probe: live, instances, etcdVersion: v('3.6.16') });
    expect(plan).toMatchObject({ kind: 'restart', reason: 'member-of-live-cluster' });
  });
});
