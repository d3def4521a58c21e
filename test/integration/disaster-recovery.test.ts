import { existsSync, readFileSync } from 'node:fs';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { snapshotFolder, pairBackups } from '../../core/domain/backups.js';
import { waitForVotingMembers } from '../../testbed/agents.js';
import { createSimulatedGroup } from '../../testbed/aws-world.js';
import { clusterContents } from '../../testbed/data.js';
import { agentLog, backupNow, loseEverything, names, openFleets, snapshotStore, urls, writeKeys, type Fleets } from '../support/recovery.js';
import { openBed, uniqueName, type Bed } from '../support/testbed.js';

let bed: Bed;
const s3 = new S3Client({ forcePathStyle: true });
let fleets: Fleets;

beforeAll(async () => {
  bed = openBed('dr');
  fleets = await openFleets(bed, 'dr');
});
afterEach(async () => {
  await fleets.closeAll();
});
afterAll(async () => {
  await bed.dispose();
});

const fleet = (label: string, env: Record<string, string> = {}) => fleets.fleet(label, { env });
const store = () => snapshotStore(fleets.bucket);
const backup = async (groupName: string) => (await backupNow(fleets.bucket, groupName)).key;
const write = writeKeys;
const log = agentLog;

async function flipByteOf(key: string): Promise<void> {
  const got = await s3.send(new GetObjectCommand({ Bucket: fleets.bucket, Key: key }));
  const bytes = Buffer.from(await got.Body!.transformToByteArray());
  bytes[2048] = (bytes[2048] ?? 0) ^ 0x01;
  await s3.send(new PutObjectCommand({ Bucket: fleets.bucket, Key: key, Body: bytes }));
}

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
    expect(lines).toMatch(new RegExp(`"message":"backup is invalid; trying the previous one".*"key":"${newest}".*SHA-256 mismatch`));
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
