import { describe, expect, it } from 'vitest';
import type { GroupInstance } from '../../core/domain/instances.js';
import type { Member } from '../../core/domain/members.js';
import { hexMemberId } from '../../core/domain/members.js';
import { silentLog } from '../../core/logger.js';
import type { EtcdAlarm, EtcdCluster, EtcdMaintenance, EtcdMembership, MemberStatus } from '../../core/ports.js';
import { maintainSpace, type MaintenanceDeps } from '../../core/use-cases/maintenance.js';

// maintainSpace against a fake cluster on a fake clock: what it does in which order, when it disarms, and
// what a run cut short leaves to the next one.
const MiB = 1024 ** 2;
const QUOTA = 1000 * MiB;
// Member IDs 10, 11, 12 (a, b, c in the hex the results use), reached at http://m<id>:2379.
const idAt = (endpoint: string) => new URL(endpoint).hostname.slice(1);
const url = (id: string) => `http://m${id}:2379`;

class FakeCluster {
  now = 0;
  calls: string[] = [];
  alarmList: EtcdAlarm[] = [];
  inFlight = new Set<string>();
  readonly files = new Map<string, { dbSize: number; inUse: number }>();
  constructor(
    readonly ids: readonly string[],
    readonly leader: string,
    readonly defragMs: number,
  ) {
    for (const id of ids) this.files.set(id, { dbSize: 1000 * MiB, inUse: 900 * MiB });
  }
  status(endpoint: string): Promise<MemberStatus> {
    const id = idAt(endpoint);
    const f = this.files.get(id);
    if (!f) throw new Error(`no member at ${endpoint}`);
    return Promise.resolve({ endpoint, memberId: id, clusterId: 'c', leaderId: this.leader, revision: '100', raftIndex: '100', raftTerm: '2', version: '3.6.16', dbSize: f.dbSize, dbSizeInUse: f.inUse, isLearner: false });
  }
  alarms(): Promise<EtcdAlarm[]> {
    return Promise.resolve(this.alarmList);
  }
  compact(revision: string): Promise<void> {
    this.calls.push(`compact ${revision}`);
    // The member that served it shows the freed pages; the others only after their next write transaction.
    const served = this.files.get(this.leader);
    if (served) served.inUse = 100 * MiB;
    return Promise.resolve();
  }
  defragmenting(endpoint: string): Promise<boolean | undefined> {
    return Promise.resolve(this.inFlight.has(idAt(endpoint)));
  }
  defragment(endpoint: string): Promise<void> {
    const id = idAt(endpoint);
    this.calls.push(`defragment ${hexMemberId(id)}`);
    this.now += this.defragMs;
    const f = this.files.get(id);
    if (f) Object.assign(f, { inUse: 100 * MiB, dbSize: 100 * MiB });
    return Promise.resolve();
  }
  disarmNoSpace(): Promise<void> {
    this.calls.push('disarm');
    this.alarmList = [];
    return Promise.resolve();
  }
  moveLeader(_from: string, to: string): Promise<void> {
    this.calls.push(`move leader to ${hexMemberId(to)}`);
    return Promise.resolve();
  }
  close(): void {}
  members(): Member[] {
    return this.ids.map((id) => ({ id, name: `i-${id}`, peerUrls: [`http://${id}:2380`], clientUrls: [url(id)], isLearner: false }));
  }
  instances(): GroupInstance[] {
    return this.ids.map((id) => ({ instanceId: `i-${id}`, lifecycleState: 'InService', healthStatus: 'Healthy', availabilityZone: 'us-east-1a', privateIp: id }));
  }
  async statuses(): Promise<MemberStatus[]> {
    return Promise.all(this.ids.map((id) => this.status(url(id))));
  }
}

function depsFor(fake: FakeCluster, budgetMs: number): MaintenanceDeps {
  const start = fake.now;
  return {
    openCluster: () => fake as unknown as EtcdCluster & EtcdMaintenance & EtcdMembership,
    log: silentLog,
    policy: { minFreeRatio: 0.5, minFreeBytes: 64 * MiB, recoverBelowRatio: 0.8 },
    quotaBytes: QUOTA,
    defragTimeoutMs: 30_000,
    deadline: start + budgetMs,
    now: () => fake.now,
  };
}

describe('maintainSpace: NOSPACE recovery', () => {
  it('compacts, defragments every member (followers first), and disarms only after the last one', async () => {
    const fake = new FakeCluster(['10', '11', '12'], '10', 1000);
    fake.alarmList = [{ memberId: '10', alarm: 'NOSPACE' }];
    const result = await maintainSpace(fake.members(), await fake.statuses(), fake.instances(), depsFor(fake, 60_000));
    expect(result).toMatchObject({ action: 'recovered-space', disarmed: true, defragmented: ['b', 'c', 'a'] });
    expect(fake.calls).toEqual(['compact 100', 'defragment b', 'defragment c', 'defragment a', 'disarm']);
  });

  it('a run cut short by its deadline keeps the alarm, and the next run goes on with the files still over the limit', async () => {
    const fake = new FakeCluster(['10', '11', '12'], '10', 30_000);
    fake.alarmList = [{ memberId: '10', alarm: 'NOSPACE' }];
    const first = await maintainSpace(fake.members(), await fake.statuses(), fake.instances(), depsFor(fake, 50_000));
    expect(first).toMatchObject({ action: 'recovering-space', disarmed: false, defragmented: ['b', 'c'] });
    expect(fake.calls).not.toContain('disarm');
    fake.calls = [];
    const second = await maintainSpace(fake.members(), await fake.statuses(), fake.instances(), depsFor(fake, 50_000));
    expect(second).toMatchObject({ action: 'recovered-space', disarmed: true, defragmented: ['a'] });
    expect(fake.calls).toEqual(['compact 100', 'defragment a', 'disarm']);
  });

  it('stops, without disarming, when another run has started a defragmentation meanwhile', async () => {
    const fake = new FakeCluster(['10', '11', '12'], '10', 1000);
    fake.alarmList = [{ memberId: '10', alarm: 'NOSPACE' }];
    const original = fake.defragment.bind(fake);
    fake.defragment = async (endpoint: string) => {
      await original(endpoint);
      fake.inFlight.add('12');
    };
    const result = await maintainSpace(fake.members(), await fake.statuses(), fake.instances(), depsFor(fake, 60_000));
    expect(result).toMatchObject({ action: 'recovering-space', disarmed: false, defragmented: ['b'] });
    expect(fake.calls).not.toContain('disarm');
  });

  it('leaves a cluster full of live data alarmed, defragmenting nothing', async () => {
    const fake = new FakeCluster(['10', '11', '12'], '10', 1000);
    fake.alarmList = [{ memberId: '10', alarm: 'NOSPACE' }];
    fake.compact = (revision: string) => {
      fake.calls.push(`compact ${revision}`);
      return Promise.resolve();
    };
    const result = await maintainSpace(fake.members(), await fake.statuses(), fake.instances(), depsFor(fake, 60_000));
    expect(result).toMatchObject({ action: 'full-of-live-data' });
    expect(fake.calls).toEqual(['compact 100']);
  });
});

describe('maintainSpace: one defragmentation', () => {
  it('moves leadership first when the member to defragment leads, and starts nothing without the time for it', async () => {
    const fake = new FakeCluster(['10', '11', '12'], '10', 1000);
    for (const id of ['11', '12']) fake.files.set(id, { dbSize: 110 * MiB, inUse: 100 * MiB });
    fake.files.set('10', { dbSize: 800 * MiB, inUse: 100 * MiB });
    expect(await maintainSpace(fake.members(), await fake.statuses(), fake.instances(), depsFor(fake, 0))).toMatchObject({ action: 'skipped', reason: 'no-time-left' });
    expect(fake.calls).toEqual([]);
    const result = await maintainSpace(fake.members(), await fake.statuses(), fake.instances(), depsFor(fake, 60_000));
    expect(result).toMatchObject({ action: 'defragmented', memberId: 'a', result: 'done' });
    expect(fake.calls[0]).toMatch(/^move leader to [bc]$/);
    expect(fake.calls[1]).toBe('defragment a');
  });
});
