import { describe, expect, it } from 'vitest';
import type { Member } from '../../core/domain/members.js';
import { decideQuorumRecovery, voterFate, type AnsweredStatus, type QuorumLossInput } from '../../core/domain/quorum-loss.js';
import type { InstanceFact } from '../../core/domain/reconcile.js';

const CLUSTER = '9000';
const GRACE = 60_000;
const member = (id: string, name: string, isLearner = false): Member => ({
  id,
  name,
  peerUrls: [`http://10.0.0.${id.length}:2380`],
  clientUrls: [`http://10.0.0.${id.length}:2379`],
  isLearner,
});
const fact = (state: string): InstanceFact => ({ state, since: undefined });
const status = (memberId: string, raftIndex: string, clusterId = CLUSTER): AnsweredStatus => ({ memberId, clusterId, raftIndex });

// "a" is this member in every case unless a case says otherwise.
const a = member('10', 'i-a');
const b = member('20', 'i-b');
const c = member('30', 'i-c');
const d = member('40', 'i-d');
const e = member('50', 'i-e');
const f = member('60', 'i-f');
const g = member('70', 'i-0f7');

interface Case {
  members: Member[];
  /** EC2 state by instance name; a name left out is unknown to EC2. "a" is running unless given. */
  ec2: Record<string, string>;
  /** Raft index of every member that answers Status (this member's own is its Status). */
  answers: Record<string, string>;
  self?: Member;
  lostForMs?: number | undefined;
  rawStatuses?: Record<string, AnsweredStatus>;
  /** Instances whose fresh registration says they serve this cluster with quorum. */
  servingElsewhere?: string[];
  /** The group's newest backup (its cluster is this one unless given), and this member's own revision (100). */
  newestBackup?: { revision: string; clusterId?: string };
}

function decide(k: Case) {
  const self = k.self ?? a;
  const facts = new Map(Object.entries({ [self.name]: 'running', ...k.ec2 }).map(([n, s]) => [n, fact(s)]));
  const statuses = new Map<string, AnsweredStatus>();
  for (const [id, index] of Object.entries(k.answers)) statuses.set(id, status(id, index));
  for (const [id, s] of Object.entries(k.rawStatuses ?? {})) statuses.set(id, s);
  const input: QuorumLossInput = {
    lostForMs: 'lostForMs' in k ? k.lostForMs : GRACE,
    graceMs: GRACE,
    self: { ...status(self.id, k.answers[self.id] ?? '100'), revision: '100' },
    members: k.members,
    facts,
    statuses,
    servingElsewhere: k.servingElsewhere ?? [],
    newestBackup: k.newestBackup && { key: 'g/snapshots/x.db', clusterId: k.newestBackup.clusterId ?? CLUSTER, revision: k.newestBackup.revision },
  };
  return decideQuorumRecovery(input);
}

describe('voterFate', () => {
  it.each([
    ['terminated', { gone: true, why: 'terminated' }],
    ['shutting-down', { gone: true, why: 'shutting-down' }],
    [undefined, { gone: true, why: 'unknown-to-ec2' }],
    ['stopped', { gone: false, why: 'instance-stopped' }],
    ['stopping', { gone: false, why: 'instance-stopping' }],
    ['running', { gone: false, why: 'instance-running' }],
    ['pending', { gone: false, why: 'instance-pending' }],
  ])('an instance in state %s', (state, expected) => {
    expect(voterFate(b, new Map(state === undefined ? [] : [['i-b', fact(state)]]))).toEqual(expected);
  });

  it('never counts a member whose name is not an instance ID as gone, even though EC2 cannot know it', () => {
    expect(voterFate(member('20', 'etcd-b'), new Map())).toEqual({ gone: false, why: 'not-an-instance-name' });
    expect(voterFate(member('20', ''), new Map())).toEqual({ gone: false, why: 'not-an-instance-name' });
  });
});

describe('decideQuorumRecovery', () => {
  it.each<[string, Case, string]>([
    // Condition 1: the own quorum has been missing for the whole grace period.
    ['quorum present', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: {}, lostForMs: undefined }, 'quorum-present'],
    ['grace not yet elapsed', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: {}, lostForMs: GRACE - 1 }, 'grace-not-elapsed'],
    // Condition 2: the gone voters leave too few to ever form a quorum.
    ['3 voters, 2 terminated', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: {} }, 'force'],
    ['3 voters, 1 terminated, 1 shutting down', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'shutting-down' }, answers: {} }, 'force'],
    ['3 voters, 1 terminated, 1 unknown to EC2', { members: [a, b, c], ec2: { 'i-b': 'terminated' }, answers: {} }, 'force'],
    ['3 voters, 1 terminated, 1 stopped (comes back with its data)', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'stopped' }, answers: {} }, 'quorum-still-possible'],
    ['3 voters, 1 terminated, 1 stopping', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'stopping' }, answers: {} }, 'quorum-still-possible'],
    ['3 voters, 1 terminated, 1 running but unreachable', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'running' }, answers: {} }, 'quorum-still-possible'],
    ['3 voters, 1 terminated, 1 not named after an instance', { members: [a, b, member('30', 'etcd-c')], ec2: { 'i-b': 'terminated' }, answers: {} }, 'quorum-still-possible'],
    ['5 voters, 2 terminated: 3 remain, a quorum', { members: [a, b, c, d, e], ec2: { 'i-b': 'running', 'i-c': 'running', 'i-d': 'terminated', 'i-e': 'terminated' }, answers: {} }, 'quorum-still-possible'],
    ['5 voters, 3 gone, the other survivor older', { members: [a, b, c, d, e], ec2: { 'i-b': 'running' }, answers: { '10': '100', '20': '99' } }, 'force'],
    ['5 voters, 4 gone', { members: [a, b, c, d, e], ec2: {}, answers: {} }, 'force'],
    ['7 voters, 3 gone: 4 remain, a quorum', { members: [a, b, c, d, e, f, g], ec2: { 'i-b': 'running', 'i-c': 'running', 'i-d': 'running' }, answers: {} }, 'quorum-still-possible'],
    ['7 voters, 4 gone, this member newest of 3', { members: [a, b, c, d, e, f, g], ec2: { 'i-b': 'running', 'i-c': 'running' }, answers: { '10': '500', '20': '499', '30': '17' } }, 'force'],
    // Condition 3: every remaining voter answers and this member holds the newest data.
    ['7 voters, 4 gone, another survivor newer', { members: [a, b, c, d, e, f, g], ec2: { 'i-b': 'running', 'i-c': 'running' }, answers: { '10': '500', '20': '499', '30': '501' } }, 'newer-data-elsewhere'],
    ['5 voters, 3 gone, the other survivor silent', { members: [a, b, c, d, e], ec2: { 'i-b': 'running' }, answers: { '10': '100' } }, 'remaining-voter-silent'],
    ['5 voters, 3 gone, the other survivor stopped (silent)', { members: [a, b, c, d, e], ec2: { 'i-b': 'stopped' }, answers: { '10': '100' } }, 'remaining-voter-silent'],
    [
      'another cluster answers on the survivor\'s URL',
      { members: [a, b, c, d, e], ec2: { 'i-b': 'running' }, answers: { '10': '100' }, rawStatuses: { '20': status('20', '1', '1234') } },
      'remaining-voter-silent',
    ],
    [
      'another member answers on the survivor\'s URL',
      { members: [a, b, c, d, e], ec2: { 'i-b': 'running' }, answers: { '10': '100' }, rawStatuses: { '20': status('99', '1') } },
      'remaining-voter-silent',
    ],
    ['a member EC2 calls terminated still answers', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: { '30': '5' } }, 'gone-member-answers'],
    // Learners do not count for quorum; a voter that remains acts before any learner.
    ['learners do not make a quorum', { members: [a, b, c, member('80', 'i-0e8', true), member('90', 'i-0e9', true)], ec2: { 'i-0e8': 'running', 'i-0e9': 'running' }, answers: { '80': '1000', '90': '1000' } }, 'force'],
    ['gone learners are not gone voters', { members: [a, b, c, member('80', 'i-0e8', true), member('90', 'i-0e9', true)], ec2: { 'i-b': 'running', 'i-c': 'terminated' }, answers: {} }, 'quorum-still-possible'],
    ['this member is a learner and a voter may come back', { self: member('80', 'i-0e8', true), members: [a, b, c, member('80', 'i-0e8', true)], ec2: { 'i-a': 'running' }, answers: {} }, 'quorum-still-possible'],
    // Every voter gone for good while learners catch up: etcd cannot force from a learner (it panics), so
    // every learner sets its data aside and the group restores its newest backup; without one it waits.
    ['every voter gone, this learner the only one', { self: member('80', 'i-0e8', true), members: [a, member('80', 'i-0e8', true)], ec2: { 'i-a': 'terminated' }, answers: {}, newestBackup: { revision: '1' } }, 'restore-instead'],
    [
      'every voter gone, another learner ahead: each sets its data aside, none forces',
      { self: member('80', 'i-0e8', true), members: [a, b, member('80', 'i-0e8', true), member('90', 'i-0e9', true)], ec2: { 'i-0e9': 'running' }, answers: { '80': '50', '90': '51' }, newestBackup: { revision: '1' } },
      'restore-instead',
    ],
    ['every voter gone, no backup to restore', { self: member('80', 'i-0e8', true), members: [a, member('80', 'i-0e8', true)], ec2: { 'i-a': 'terminated' }, answers: {} }, 'learner-without-backup'],
    // A stale view: the cluster lives on elsewhere (this member was cut off while the others were replaced).
    [
      'another instance says it serves this cluster with quorum',
      { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: {}, servingElsewhere: ['i-0new'] },
      'cluster-serves-elsewhere',
    ],
    // The newest backup against a lone survivor that lagged.
    ['the newest backup of this cluster is ahead of the lone survivor', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: {}, newestBackup: { revision: '101' } }, 'restore-instead'],
    ['the newest backup is not ahead', { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: {}, newestBackup: { revision: '100' } }, 'force'],
    [
      'the newest backup ahead is of another cluster',
      { members: [a, b, c], ec2: { 'i-b': 'terminated', 'i-c': 'terminated' }, answers: {}, newestBackup: { revision: '900', clusterId: '1234' } },
      'force',
    ],
    [
      'the newest backup is ahead, but a learner remains (it would answer the new instances and never get a voter)',
      { members: [a, b, c, member('80', 'i-0e8', true)], ec2: { 'i-b': 'terminated', 'i-c': 'terminated', 'i-0e8': 'running' }, answers: { '80': '90' }, newestBackup: { revision: '101' } },
      'force',
    ],
    [
      'the newest backup is ahead, but another survivor answers (it would keep waiting for a quorum otherwise)',
      { members: [a, b, c, d, e], ec2: { 'i-b': 'running' }, answers: { '10': '100', '20': '99' }, newestBackup: { revision: '900' } },
      'force',
    ],
    ['EC2 does not describe this instance as running (wrong region? a stale view?)', { members: [a, b, c], ec2: { 'i-a': 'terminated' }, answers: {} }, 'own-instance-not-confirmed'],
  ])('%s', (_name, k, expected) => {
    const plan = decide(k);
    expect(plan.kind === 'decline' ? plan.reason : plan.kind).toBe(expected);
  });

  it('reports the gone voters and the raft indexes it compared, newest first', () => {
    const plan = decide({ members: [a, b, c, d, e], ec2: { 'i-b': 'running', 'i-c': 'terminated', 'i-d': 'shutting-down' }, answers: { '10': '100', '20': '99' } });
    expect(plan).toEqual({
      kind: 'force',
      voters: 5,
      gone: [
        { memberId: '30', name: 'i-c', why: 'terminated' },
        { memberId: '40', name: 'i-d', why: 'shutting-down' },
        { memberId: '50', name: 'i-e', why: 'unknown-to-ec2' },
      ],
      compared: [
        { memberId: '10', name: 'i-a', raftIndex: '100' },
        { memberId: '20', name: 'i-b', raftIndex: '99' },
      ],
    });
  });

  // IDs are uint64 beyond a double's precision: compared as integers, not as strings or numbers.
  const low = member('18446744073709551610', 'i-a');
  const high = member('18446744073709551615', 'i-b');
  it.each([
    ['the lower member ID of two equally new survivors acts', low, 'force'],
    ['the higher member ID of two equally new survivors waits', high, 'newer-data-elsewhere'],
  ])('%s', (_name, self, expected) => {
    const members = [low, high, c, d, e];
    const plan = decide({ self, members, ec2: { 'i-a': 'running', 'i-b': 'running' }, answers: { [low.id]: '12345678901234567890', [high.id]: '12345678901234567890' } });
    expect(plan.kind === 'decline' ? plan.reason : plan.kind).toBe(expected);
  });

  it('compares raft indexes as integers: 10 is newer than 9', () => {
    const plan = decide({ members: [a, b, c, d, e], ec2: { 'i-b': 'running' }, answers: { '10': '9', '20': '10' } });
    expect(plan).toMatchObject({ kind: 'decline', reason: 'newer-data-elsewhere', members: ['i-b'] });
  });
});
