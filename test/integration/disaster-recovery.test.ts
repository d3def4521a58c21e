import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { S3SnapshotStore } from '../../core/aws/s3-snapshot-store.js';
import { snapshotFolder, pairBackups } from '../../core/domain/backups.js';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { silentLog } from '../../core/logger.js';
import type { InstanceIdentity } from '../../core/ports.js';
import { takeBackup } from '../../core/use-cases/backup.js';
import { build } from '../../scripts/build.mjs';
import { AgentFleet, waitForVotingMembers } from '../../testbed/agents.js';
import { createSimulatedGroup, terminateInGroup } from '../../testbed/aws-world.js';
import { clusterContents } from '../../testbed/data.js';
import { openBed, uniqueName, type Bed } from '../support/testbed.js';

let bed: Bed;
let bundle: string;
const s3 = new S3Client({ forcePathStyle: true });
const bucket = uniqueName('dr').toLowerCase();
const fleets: AgentFleet[] = [];

beforeAll(async () => {
  bed = openBed('dr');
  ({ agent: bundle } = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true }));
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});
afterEach(async () => {
  await Promise.all(fleets.splice(0).map((f) => f.closeAll()));
});
afterAll(async () => {
  await bed.dispose();
});

function fleet(label: string, env: Record<string, string> = {}): AgentFleet {
  const f = new AgentFleet({ processes: bed.processes, workDir: path.join(bed.workDir, uniqueName(label)), bundle, bucket, awsEndpoint: process.env.AWS_ENDPOINT_URL as string, env });
  fleets.push(f);
  return f;
}
const urls = (instances: readonly InstanceIdentity[]) => instances.map((i) => `http://${i.privateIp}:2379`);
const names = (instances: readonly InstanceIdentity[]) => instances.map((i) => i.instanceId);
const store = () => new S3SnapshotStore(s3, bucket, { kmsKeyId: undefined, partSize: 5 * 1024 * 1024, queueSize: 2 });

async function backup(groupName: string): Promise<string> {
  const summary = await takeBackup(
    {
      inventory: new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
      openCluster: (e) => new Etcd3Cluster(e, { dialTimeoutMs: 1000, callTimeoutMs: 3000 }),
      store: store(),
      groupName,
      prefix: '',
      endpoints: undefined,
      clientPort: 2379,
      retention: { keepLast: 10, hourlyForMs: 0, dailyForMs: 0, orphanAfterMs: 86_400_000 },
      snapshotTimeoutMs: 60_000,
      now: () => Date.now(),
      log: silentLog,
    },
    { force: true },
  );
  if (summary.status !== 'uploaded') throw new Error('backup was skipped');
  return summary.key;
}

async function write(endpoints: string[], prefix: string, count: number, leasedEvery = 0): Promise<Map<string, string>> {
  const client = new Etcd3({ hosts: endpoints });
  const leased = new Map<string, string>();
  try {
    const lease = client.lease(3600, { autoKeepAlive: false });
    const leaseId = leasedEvery > 0 ? await lease.grant() : '0';
    for (let i = 0; i < count; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, count - i) }, (_, j) => {
          const key = `${prefix}/${String(i + j).padStart(6, '0')}`;
          if (leasedEvery > 0 && (i + j) % leasedEvery === 0) {
            leased.set(key, leaseId);
            return lease.put(key).value(`v-${key}`).exec();
          }
          return client.put(key).value(`v-${key}`).exec();
        }),
      );
    }
  } finally {
    client.close();
  }
  return leased;
}


/** Every instance and its disk lost at once; the group launches replacements. */
async function loseEverything(agents: AgentFleet, groupName: string, instances: readonly InstanceIdentity[]): Promise<InstanceIdentity[]> {
  await Promise.all(instances.map((i) => agents.kill(i.instanceId)));
  for (const i of instances) agents.wipe(i.instanceId);
  const replacements: InstanceIdentity[] = [];
  for (const i of instances) {
    const r = await terminateInGroup(groupName, i.instanceId, true);
    if (!r) throw new Error('the emulated group launched no replacement');
    replacements.push(r);
  }
  return replacements;
}

async function flipByteOf(key: string): Promise<void> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await got.Body!.transformToByteArray());
  bytes[2048] = (bytes[2048] ?? 0) ^ 0x01;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
}

const log = (agents: AgentFleet, i: InstanceIdentity) => readFileSync(agents.node(i.instanceId).logFile, 'utf8');

describe('disaster recovery', () => {
  it('total loss: exactly one new agent restores the newest backup, the others join; keys, values and leases are back', async () => {
    // Prepare: a cluster built by agents, 10k keys (some leased), a backup, then writes the backup misses
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 3 });
    const first = fleet('first');
    await Promise.all(group.instances.map((i) => first.start(i)));
    await waitForVotingMembers(urls(group.instances), names(group.instances));
    const leased = await write(urls(group.instances), 'data', 10_000, 100);
    const backedUp = await clusterContents(urls(group.instances), 'data');
    const key = await backup(group.groupName);
    await write(urls(group.instances), 'late', 50);

    // Act: every node and its data die at once; three new agents start together
    const replacements = await loseEverything(first, group.groupName, group.instances);
    const second = fleet('second');
    await Promise.all(replacements.map((i) => second.start(i)));
    await waitForVotingMembers(urls(replacements), names(replacements), 90_000);

    // Assess
    const back = await clusterContents(urls(replacements), 'data');
    expect(back.count).toBe(10_000);
    expect(back.digest).toBe(backedUp.digest);
    expect(back.leases).toEqual(leased);
    expect((await clusterContents(urls(replacements), 'late')).count).toBe(0); // written after the backup: the RPO
    const restorers = replacements.filter((i) => log(second, i).includes('"message":"restored backup"'));
    expect(restorers).toHaveLength(1);
    expect(log(second, restorers[0]!)).toContain(key);
    for (const other of replacements.filter((i) => i !== restorers[0])) expect(log(second, other)).toContain('"message":"added as learner"');
  });

  it('newest backup corrupted: restored from the previous one, and the log says which and why', async () => {
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 3 });
    const first = fleet('first');
    await Promise.all(group.instances.map((i) => first.start(i)));
    await waitForVotingMembers(urls(group.instances), names(group.instances));
    await write(urls(group.instances), 'one', 300);
    const older = await backup(group.groupName);
    await write(urls(group.instances), 'two', 300);
    const newest = await backup(group.groupName);
    await flipByteOf(newest);

    const replacements = await loseEverything(first, group.groupName, group.instances);
    const second = fleet('second');
    await Promise.all(replacements.map((i) => second.start(i)));
    await waitForVotingMembers(urls(replacements), names(replacements), 90_000);

    expect((await clusterContents(urls(replacements), 'one')).count).toBe(300);
    expect((await clusterContents(urls(replacements), 'two')).count).toBe(0);
    const restorer = replacements.find((i) => log(second, i).includes('"message":"restored backup"'))!;
    const lines = log(second, restorer);
    expect(lines).toMatch(new RegExp(`"message":"backup cannot be restored; trying the previous one".*"key":"${newest}".*SHA-256 mismatch`));
    expect(lines).toMatch(new RegExp(`"message":"restored backup".*"key":"${older}"`));
  });

  it('all backups corrupt: the seeder refuses, naming the backups it tried, and nothing starts empty', async () => {
    // Prepare: a one-instance group whose two backups are both damaged
    const source = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 1 });
    const builder = fleet('builder');
    await builder.start(source.instances[0]!);
    await waitForVotingMembers(urls(source.instances), names(source.instances));
    await write(urls(source.instances), 'k', 100);
    const a = await backup(source.groupName);
    await write(urls(source.instances), 'k2', 100);
    const b = await backup(source.groupName);
    await flipByteOf(a);
    await flipByteOf(b);
    const [replacement] = await loseEverything(builder, source.groupName, source.instances);

    // Act
    const agents = fleet('refusing');
    const node = await agents.start(replacement!);
    const code = await node.process!.exited;

    // Assess
    expect(code).toBe(1);
    const text = readFileSync(node.logFile, 'utf8');
    expect(text).toContain('refusing to start an empty cluster: 2 backup(s) exist but none restores');
    expect(text).toContain(a);
    expect(text).toContain(b);
    expect(existsSync(node.dataDir)).toBe(false);
    await expect(fetch(`${node.clientUrl}/health`)).rejects.toThrow();
    expect(pairBackups(await store().list(snapshotFolder('', source.groupName))).backups).toHaveLength(2);
  });

  it('no backup has ever existed: an empty cluster starts', async () => {
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 1 });
    const agents = fleet('fresh');
    await agents.start(group.instances[0]!);
    await waitForVotingMembers(urls(group.instances), names(group.instances));
    expect(log(agents, group.instances[0]!)).toContain('"message":"no backup exists; founding an empty cluster"');
  });
});
