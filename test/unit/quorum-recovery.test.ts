import { describe, expect, it } from 'vitest';
import type { AgentRegistration } from '../../core/domain/election.js';
import type { Member } from '../../core/domain/members.js';
import type { InstanceFact } from '../../core/domain/reconcile.js';
import { silentLog, type Log } from '../../core/logger.js';
import type { MemberStatus } from '../../core/ports.js';
import { recoverFromQuorumLoss, type QuorumRecoveryDeps } from '../../core/use-cases/quorum-recovery.js';

const SELF = 'http://10.0.0.1:2379';
const member = (id: string, n: number): Member => ({
  id,
  name: `i-${n}`,
  peerUrls: [`http://10.0.0.${n}:2380`],
  clientUrls: [`http://10.0.0.${n}:2379`],
  isLearner: false,
});
const members = [member('1', 1), member('2', 2), member('3', 3)];
const status = (leaderId: string): MemberStatus => ({
  endpoint: SELF,
  memberId: '1',
  clusterId: '9',
  leaderId,
  revision: '5',
  raftIndex: '42',
  raftTerm: '3',
  version: '3.4.23',
  dbSize: 1,
  dbSizeInUse: 1,
  isLearner: false,
});

/**
 * The use case against fakes on a fake clock: `quorum(t, check)` says whether the own etcd has a quorum at
 * time t on the check-th look at it; the two other voters' instances are terminated, so once the grace has
 * passed the plan is to force.
 */
function harness(
  quorum: (t: number, check: number) => boolean,
  graceMs = 1000,
  world: { registrations?: (now: number) => AgentRegistration[]; newestBackup?: { key: string; clusterId: string; revision: string } } = {},
) {
  let now = 0;
  let check = 0;
  const quorumNow = () => quorum(now, check);
  const forcedAt: number[] = [];
  const restoredAt: number[] = [];
  const messages: Array<{ level: string; message: string; fields: Record<string, unknown> }> = [];
  const record = (level: string): Log[keyof Log] => (message, ...fields) => messages.push({ level, message, fields: Object.assign({}, ...fields) as Record<string, unknown> });
  const log: Log = { ...silentLog, info: record('info'), warn: record('warn') };
  const facts = new Map<string, InstanceFact>([
    ['i-1', { state: 'running', since: undefined }],
    ['i-2', { state: 'terminated', since: undefined }],
    ['i-3', { state: 'terminated', since: undefined }],
  ]);
  const deps: QuorumRecoveryDeps = {
    selfUrl: SELF,
    openCluster: () => ({
      status: (endpoint) => {
        if (endpoint !== SELF) return Promise.reject(new Error('unreachable'));
        check += 1;
        return Promise.resolve(status(quorumNow() ? '1' : '0'));
      },
      hasQuorum: () => Promise.resolve(quorumNow()),
      localMembers: () => Promise.resolve({ clusterId: '9', memberId: '1', members }),
      listMembers: () => Promise.reject(new Error('not used')),
      clusterVersion: () => Promise.reject(new Error('not used')),
      hashKV: () => Promise.reject(new Error('not used')),
      close: () => {},
    }),
    inventory: { instanceFacts: () => Promise.resolve(facts) },
    forceNewCluster: () => {
      forcedAt.push(now);
      return Promise.resolve(true);
    },
    restoreInstead: () => {
      restoredAt.push(now);
      return Promise.resolve();
    },
    selfInstanceId: 'i-1',
    registrations: () => Promise.resolve(world.registrations?.(now) ?? []),
    freshMs: 4000,
    newestBackup: () => Promise.resolve(world.newestBackup),
    now: () => now,
    sleep: (ms) => {
      now += ms;
      return Promise.resolve();
    },
    log,
    graceMs,
    pollMs: 250,
    stopped: () => now > 10_000,
  };
  return { run: () => recoverFromQuorumLoss(deps), forcedAt, restoredAt, messages };
}

describe('recoverFromQuorumLoss', () => {
  it('forces once, only after quorum has been missing for the whole grace period, logging the gone members and raft indexes', async () => {
    const h = harness(() => false);
    await h.run();
    expect(h.forcedAt[0]).toBeGreaterThanOrEqual(1000);
    const forcing = h.messages.find((m) => m.message === 'forcing a new cluster from this member');
    expect(forcing?.fields).toMatchObject({ gone: ['i-2(2): terminated', 'i-3(3): terminated'], raftIndexes: ['i-1(1): 42'] });
  });

  it('starts the grace period over when quorum comes back in between', async () => {
    const h = harness((t) => t >= 500 && t < 750);
    await h.run();
    expect(h.forcedAt[0]).toBeGreaterThanOrEqual(750 + 1000);
  });

  it('does not act when quorum is back at the re-check right before acting', async () => {
    // Checks 1-5 (t = 0..1000 ms) find no quorum; the decision at t = 1000 is to force; check 6, the re-check, finds one.
    const h = harness((_t, check) => check >= 6);
    await h.run();
    expect(h.forcedAt).toEqual([]);
    expect(h.messages).toContainEqual(expect.objectContaining({ message: 'not forcing a new cluster', fields: expect.objectContaining({ reason: 'quorum-returned-before-acting' }) as unknown }));
  });

  it('never forces while another agent says, recently, that it serves this cluster with quorum (this view is stale)', async () => {
    // A partition cut this member off; the others replaced their members and serve on: EC2 calls its old peers terminated.
    const serving = (now: number): AgentRegistration[] => [
      { instanceId: 'i-7', hasData: true, at: now - 1000, serving: { clusterId: '9', memberId: '77', quorum: true, since: 0 } },
      // Its own registration, another cluster, and a stale one say nothing.
      { instanceId: 'i-1', hasData: true, at: now, serving: { clusterId: '9', memberId: '1', quorum: true, since: 0 } },
      { instanceId: 'i-8', hasData: true, at: now, serving: { clusterId: '123', memberId: '88', quorum: true, since: 0 } },
    ];
    const h = harness(() => false, 1000, { registrations: serving });
    await h.run();
    expect(h.forcedAt).toEqual([]);
    expect(h.messages).toContainEqual(
      expect.objectContaining({ message: 'not forcing a new cluster', fields: expect.objectContaining({ reason: 'cluster-serves-elsewhere', members: ['i-7'] }) as unknown }),
    );
  });

  it('forces once the registration saying the cluster serves elsewhere has gone stale (that instance died)', async () => {
    const h = harness(() => false, 1000, {
      registrations: () => [{ instanceId: 'i-7', hasData: true, at: 0, serving: { clusterId: '9', memberId: '77', quorum: true, since: 0 } }],
    });
    await h.run();
    expect(h.forcedAt[0]).toBeGreaterThan(4000);
  });

  it('sets its data aside for a restore instead of forcing when the newest backup of this cluster is ahead of it', async () => {
    const h = harness(() => false, 1000, { newestBackup: { key: 'g/snapshots/x.db', clusterId: '9', revision: '6' } });
    await h.run();
    expect(h.forcedAt).toEqual([]);
    expect(h.restoredAt).toHaveLength(1);
  });
});
