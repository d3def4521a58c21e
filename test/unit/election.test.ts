import { describe, expect, it } from 'vitest';
import { leaseAction, seedPrecondition, servingElsewhere, type AgentRegistration } from '../../core/domain/election.js';
import type { GroupInstance } from '../../core/domain/instances.js';

const inst = (instanceId: string, lifecycleState = 'InService'): GroupInstance => ({
  instanceId,
  lifecycleState,
  healthStatus: 'Healthy',
  availabilityZone: 'us-east-1a',
  privateIp: `10.0.1.${instanceId.length}`,
});
const reg = (instanceId: string, hasData: boolean, at: number): AgentRegistration => ({ instanceId, hasData, at });
const NOW = 1_000_000;

describe('seedPrecondition', () => {
  const group = [inst('i-a'), inst('i-b'), inst('i-c')];
  it.each<[string, GroupInstance[], AgentRegistration[], unknown]>([
    ['every other active instance says, recently, it has no data', group, [reg('i-b', false, NOW - 100), reg('i-c', false, NOW)], { ok: true }],
    ['a peer holds data (a member that is merely down)', group, [reg('i-b', true, NOW - 999_999), reg('i-c', false, NOW)], { ok: false, reason: 'peer-has-data', instanceId: 'i-b' }],
    ['a peer never registered (its agent is not running)', group, [reg('i-b', false, NOW)], { ok: false, reason: 'peer-not-registered', instanceId: 'i-c' }],
    ['a peer registered empty long ago', group, [reg('i-b', false, NOW), reg('i-c', false, NOW - 31_000)], { ok: false, reason: 'peer-registration-stale', instanceId: 'i-c' }],
    ['terminated instances do not count, whatever they registered', [inst('i-a'), inst('i-b', 'Terminating'), inst('i-c')], [reg('i-b', true, NOW), reg('i-c', false, NOW)], { ok: true }],
    ['alone in the group', [inst('i-a')], [], { ok: true }],
  ])('%s', (_why, instances, registrations, expected) => {
    expect(seedPrecondition('i-a', instances, registrations, NOW, 30_000)).toEqual(expected);
  });
});

describe('leaseAction', () => {
  it.each([
    ['no lease yet: create it (If-None-Match)', undefined, { kind: 'create' }],
    ['our own lease: renew it (If-Match)', { holder: 'i-a', expiresAt: NOW + 5, etag: 'e1' }, { kind: 'renew', etag: 'e1' }],
    ['a live lease of another: wait', { holder: 'i-b', expiresAt: NOW + 5, etag: 'e1' }, { kind: 'wait', holder: 'i-b', expiresAt: NOW + 5 }],
    ['an expired lease of another: take it over (If-Match)', { holder: 'i-b', expiresAt: NOW, etag: 'e2' }, { kind: 'take-over', etag: 'e2', from: 'i-b' }],
  ])('%s', (_why, lease, expected) => {
    expect(leaseAction('i-a', lease, NOW)).toEqual(expected);
  });
});

describe('servingElsewhere', () => {
  const NOW = 100_000;
  const serving = (instanceId: string, memberId: string, quorum: boolean, since: number, at = NOW - 1000, clusterId = 'c1'): AgentRegistration => ({
    instanceId,
    hasData: true,
    at,
    serving: { clusterId, memberId, quorum, since },
  });
  const view = { knownMemberIds: new Set(['m-self', 'm-b', 'm-c']), graceMs: 10_000 };
  it.each<[string, AgentRegistration, boolean]>([
    ['another member with quorum', serving('i-b', 'm-b', true, 0), true],
    ['a known member without quorum for long', serving('i-b', 'm-b', false, NOW - 60_000), false],
    // A cut-off survivor must not force on one momentary probe of the live side (a leader change, a slow disk).
    ['a known member that lost quorum only moments ago', serving('i-b', 'm-b', false, NOW - 2_000), true],
    // The membership moved on without this member: the live cluster removed it and added others.
    ['a member this member does not know, even without quorum', serving('i-d', 'm-d', false, NOW - 60_000), true],
    ['a stale registration', serving('i-b', 'm-b', true, 0, NOW - 60_000), false],
    ['another cluster', serving('i-b', 'm-b', true, 0, NOW - 1000, 'c2'), false],
    ['this instance itself', serving('i-self', 'm-self', true, 0), false],
  ])('%s', (_name, registration, expected) => {
    expect(servingElsewhere('i-self', 'c1', [registration], NOW, 30_000, view)).toEqual(expected ? [registration.instanceId] : []);
  });
});
