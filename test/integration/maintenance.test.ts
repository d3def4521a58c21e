import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { silentLog } from '../../core/logger.js';
import { discoverCluster } from '../../core/use-cases/discover.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DefragPolicy } from '../../core/domain/maintenance.js';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import type { Log } from '../../core/logger.js';
import { maintainSpace, type MaintenanceDeps } from '../../core/use-cases/maintenance.js';
import { waitFor } from '../../testbed/wait.js';
import { groupWithCluster, openBed, type Bed } from '../support/testbed.js';

// Defragmentation and NOSPACE recovery against real etcd: the decision's order (followers first, the leader
// after its leadership moves), a cluster brought back from NOSPACE, and one that is full of live data.
const MiB = 1024 ** 2;
const QUOTA = 16 * MiB;
const timeouts = { dialTimeoutMs: 1000, callTimeoutMs: 5000 };
let bed: Bed;

beforeAll(() => {
  bed = openBed('maintenance');
});
afterAll(async () => {
  await bed.dispose();
});

const lines: Array<{ message: string; fields: Record<string, unknown> }> = [];
const log: Log = {
  debug: () => undefined,
  info: (message, ...fields) => lines.push({ message, fields: Object.assign({}, ...fields) as Record<string, unknown> }),
  warn: (message, ...fields) => lines.push({ message, fields: Object.assign({}, ...fields) as Record<string, unknown> }),
  error: (message, ...fields) => lines.push({ message, fields: Object.assign({}, ...fields) as Record<string, unknown> }),
};
const deps = (policy: DefragPolicy): MaintenanceDeps => ({
  openCluster: (endpoints) => new Etcd3Cluster(endpoints, timeouts),
  log,
  policy,
  quotaBytes: QUOTA,
  defragTimeoutMs: 30_000,
  deadline: Date.now() + 60_000,
  now: () => Date.now(),
});

/** The group's instances, the members and each one's Status, as reconcile gathers them. */
async function look(urls: readonly string[], groupName: string) {
  const etcd = new Etcd3Cluster(urls, timeouts);
  try {
    const view = await discoverCluster(groupName, {
      inventory: new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
      openCluster: (endpoints: readonly string[]) => new Etcd3Cluster(endpoints, timeouts),
      clientPort: 2379,
      log: silentLog,
    });
    const { members } = await etcd.listMembers();
    const statuses = await Promise.all(members.map((m) => etcd.status(m.clientUrls[0] as string)));
    return { members, statuses, instances: view.instances };
  } finally {
    etcd.close();
  }
}

/**
 * Writes under keys key-0..key-(n-1), round after round, until etcd refuses one (NOSPACE) or rounds run out.
 * etcd applies the write that crosses the quota and answers it with NOSPACE all the same: that one write is
 * in doubt (as any failed write is), its key may hold it or the acknowledged value before it.
 */
async function fill(
  client: Etcd3,
  keys: number,
  rounds: number,
  valueBytes: number,
): Promise<{ acknowledged: Map<string, string>; refused: string | undefined; inDoubt: { key: string; value: string } | undefined }> {
  const acknowledged = new Map<string, string>();
  for (let r = 0; r < rounds; r += 1) {
    for (let k = 0; k < keys; k += 1) {
      const value = `${r}:${randomBytes(valueBytes / 2).toString('hex')}`;
      try {
        await client.put(`key-${k}`).value(value);
        acknowledged.set(`key-${k}`, value);
      } catch (error) {
        return { acknowledged, refused: (error as Error).message, inDoubt: { key: `key-${k}`, value } };
      }
    }
  }
  return { acknowledged, refused: undefined, inDoubt: undefined };
}

describe('maintenance against real etcd', () => {
  it('defragments one member per run: the followers, then the leader after its leadership moved', async () => {
    const { group, etcd } = await groupWithCluster(bed, 3);
    const client = new Etcd3({ hosts: etcd.clientUrls() });
    try {
      // History of one key overwritten 48 times with 128 KiB, then compacted: ~6 MiB of free pages per member.
      await fill(client, 1, 48, 128 * 1024);
      const { statuses } = await look(etcd.clientUrls(), group.groupName);
      await client.kv.compact({ revision: statuses[0]?.revision, physical: true });
      // A member's Status shows the pages a compaction freed after its next write transaction, as on a cluster
      // with traffic: a few small writes.
      await waitFor(
        'every member to show the pages the compaction freed',
        async () => {
          await client.put('traffic').value(String(Date.now()));
          return (await look(etcd.clientUrls(), group.groupName)).statuses.every((s) => s.dbSizeInUse < s.dbSize / 2);
        },
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      const policy = { minFreeRatio: 0.5, minFreeBytes: 1 * MiB, recoverBelowRatio: 0.8 };
      const leaderBefore = (await look(etcd.clientUrls(), group.groupName)).statuses[0]?.leaderId;

      const done: Array<{ memberId: string; movedLeaderTo: string | undefined }> = [];
      for (let run = 0; run < 3; run += 1) {
        const { members, statuses: now, instances } = await look(etcd.clientUrls(), group.groupName);
        const result = await maintainSpace(members, now, instances, deps(policy));
        if (result.action !== 'defragmented') throw new Error(`run ${run}: ${JSON.stringify(result)}`);
        expect(result.result).toBe('done');
        expect(result.afterBytes).toBeLessThan(result.beforeBytes / 2);
        done.push({ memberId: result.memberId, movedLeaderTo: result.movedLeaderTo });
      }
      expect(new Set(done.map((d) => d.memberId)).size).toBe(3);
      // The leader of the start went last, after handing over its leadership.
      expect(done[2]?.memberId).toBe(BigInt(leaderBefore ?? '0').toString(16));
      expect(done[2]?.movedLeaderTo).toBeDefined();
      expect(done.slice(0, 2).every((d) => d.movedLeaderTo === undefined)).toBe(true);

      // Nothing left to reclaim: the next run says so and does nothing.
      const { members, statuses: after, instances } = await look(etcd.clientUrls(), group.groupName);
      expect(await maintainSpace(members, after, instances, deps(policy))).toMatchObject({ action: 'skipped', reason: 'nothing-to-reclaim' });
    } finally {
      client.close();
    }
  });

  it('brings a cluster back from NOSPACE (compaction, every member defragmented, alarm disarmed) with no acknowledged write lost', async () => {
    const { group, etcd } = await groupWithCluster(bed, 3, [`--quota-backend-bytes=${QUOTA}`]);
    const client = new Etcd3({ hosts: etcd.clientUrls() });
    try {
      const { acknowledged, refused, inDoubt } = await fill(client, 4, 200, 256 * 1024);
      expect(refused).toMatch(/space exceeded|NOSPACE/i);
      const { members, statuses, instances } = await look(etcd.clientUrls(), group.groupName);
      const result = await maintainSpace(members, statuses, instances, deps({ minFreeRatio: 0.5, minFreeBytes: 64 * MiB, recoverBelowRatio: 0.8 }));
      expect(result).toMatchObject({ action: 'recovered-space', disarmed: true });
      if (result.action !== 'recovered-space') throw new Error(result.action);
      expect(result.defragmented).toHaveLength(3);
      const maintenance = new Etcd3Cluster(etcd.clientUrls(), timeouts);
      try {
        expect(await maintenance.alarms()).toEqual([]);
      } finally {
        maintenance.close();
      }
      for (const [key, value] of acknowledged) {
        const now = await client.get(key).string();
        if (key === inDoubt?.key) expect([value, inDoubt.value], key).toContain(now);
        else expect(now, key).toBe(value);
      }
      await client.put('after-recovery').value('accepted');
      expect(await client.get('after-recovery').string()).toBe('accepted');
    } finally {
      client.close();
    }
  });

  it('leaves a cluster full of live data alarmed, says so, and keeps serving reads', async () => {
    const { group, etcd } = await groupWithCluster(bed, 3, [`--quota-backend-bytes=${QUOTA}`]);
    const client = new Etcd3({ hosts: etcd.clientUrls() });
    try {
      // Distinct keys: everything written is live, nothing for compaction to free.
      const { acknowledged, refused } = await fill(client, 400, 1, 256 * 1024);
      expect(refused).toMatch(/space exceeded|NOSPACE/i);
      const { members, statuses, instances } = await look(etcd.clientUrls(), group.groupName);
      const result = await maintainSpace(members, statuses, instances, deps({ minFreeRatio: 0.5, minFreeBytes: 64 * MiB, recoverBelowRatio: 0.8 }));
      expect(result).toMatchObject({ action: 'full-of-live-data' });
      expect(lines.some((l) => l.message.startsWith('NOSPACE stays: the cluster is full of live data'))).toBe(true);
      const maintenance = new Etcd3Cluster(etcd.clientUrls(), timeouts);
      try {
        expect((await maintenance.alarms()).map((a) => a.alarm)).toContain('NOSPACE');
      } finally {
        maintenance.close();
      }
      const [key, value] = [...acknowledged][0] ?? [];
      expect(await client.get(key ?? '').string()).toBe(value);
    } finally {
      client.close();
    }
  });
});
