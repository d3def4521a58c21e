import { describe, expect, it } from 'vitest';
import { leaseAction, seedPrecondition, type AgentRegistration } from '../../core/domain/election.js';
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
