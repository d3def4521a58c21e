import { existsSync, readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pairBackups, snapshotFolder } from '../../core/domain/backups.js';
import { inspectCluster, waitForVotingMembers } from '../../testbed/agents.js';
import { createSimulatedGroup, scaleOut } from '../../testbed/aws-world.js';
import { clusterContents } from '../../testbed/data.js';
import { etcdRelease } from '../../testbed/tools.js';
import { agentLog, backupNow, loseEverything, names, openFleets, snapshotStore, urls, writeKeys, type Fleets } from '../support/recovery.js';
import { openBed, uniqueName, type Bed } from '../support/testbed.js';

// Agents of different etcd releases meeting: what etcd's upgrade rules allow happens, what they forbid is
// refused with a clear message and changes nothing. Every case names its releases, so CI runs this file once.
let bed: Bed;
let fleets: Fleets;
const [v35, v36, v37] = ['3.5', '3.6', '3.7'].map((m) => etcdRelease(m).version) as [string, string, string];

beforeAll(async () => {
  bed = openBed('skew');
  fleets = await openFleets(bed, 'skew');
});
afterEach(async () => {
  await fleets.closeAll();
});
afterAll(async () => {
  await bed.dispose();
});

const fleet = (label: string, etcdVersion: string) => fleets.fleet(label, { etcdVersion });

/** A one-member cluster on `version`, built by its agent. */
async function oneMember(label: string, version: string) {
  const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 1 });
  const agents = fleet(label, version);
  await agents.start(group.instances[0]!);
  const cluster = await waitForVotingMembers(urls(group.instances), names(group.instances));
  return { group, agents, cluster };
}

describe('etcd releases meeting in one group', () => {
  it.each([
    ['a skipped minor', '3.5', '3.7', [`runs etcd ${v37}`, `runs ${v35}`, 'one minor version at a time (3.5 → 3.6 → 3.7)']],
    ['a downgrade', '3.7', '3.6', [`runs etcd ${v36}, older than every member`, `runs ${v37}`, 'etcd 3.7.x or newer']],
  ])('an instance that would join across %s (%s members, a %s instance) refuses, naming both versions, and changes nothing', async (_why, members, joiner, says) => {
    // Prepare
    const { group, cluster } = await oneMember(`members-${members}`, members);

    // Act: the group launches one more instance, with the other release (a launch template change)
    const [newcomer] = await scaleOut(group.groupName, 1);
    const node = await fleet(`joiner-${joiner}`, joiner).start(newcomer!);
    const code = await node.process!.exited;

    // Assess
    expect(code).toBe(1);
    const log = readFileSync(node.logFile, 'utf8');
    expect(log).toContain('refusing to join the cluster');
    for (const s of says) expect(log).toContain(s);
    expect(existsSync(node.dataDir)).toBe(false);
    const after = await inspectCluster(urls(group.instances));
    expect(after.members.map((m) => m.id)).toEqual(cluster.members.map((m) => m.id));
  });

  it('a backup of 3.5 data restores on 3.7 (restoring older data is no version skip)', async () => {
    // Prepare
    const { group, agents } = await oneMember('old-data', '3.5');
    await writeKeys(urls(group.instances), 'old', 200);
    const before = await clusterContents(urls(group.instances), 'old');
    const { key } = await backupNow(fleets.bucket, group.groupName);
    const [replacement] = await loseEverything(agents, group.groupName, group.instances);

    // Act: the replacement runs 3.7
    const newer = fleet('old-data-restorer', '3.7');
    await newer.start(replacement!);
    await waitForVotingMembers(urls([replacement!]), names([replacement!]));

    // Assess
    expect(agentLog(newer, replacement!)).toMatch(new RegExp(`"message":"restored backup".*"key":"${key}"`));
    expect(await clusterContents(urls([replacement!]), 'old')).toEqual(before);
  });

  it('a backup of 3.7 data is not restored on 3.6, and no older backup is restored instead', async () => {
    // Prepare: two backups of a 3.7 cluster, then everything is lost and the group now launches 3.6
    const { group, agents } = await oneMember('new-data', '3.7');
    await writeKeys(urls(group.instances), 'a', 20);
    const older = await backupNow(fleets.bucket, group.groupName);
    await writeKeys(urls(group.instances), 'b', 20);
    const newest = await backupNow(fleets.bucket, group.groupName);
    expect(newest.key).not.toBe(older.key);
    const [replacement] = await loseEverything(agents, group.groupName, group.instances);

    // Act
    const node = await fleet('new-data-restorer', '3.6').start(replacement!);
    const code = await node.process!.exited;

    // Assess: a refusal naming the backup and both versions; nothing restored, both backups kept
    expect(code).toBe(1);
    const log = readFileSync(node.logFile, 'utf8');
    expect(log).toContain(`backup ${newest.key} holds data of etcd 3.7`);
    expect(log).toContain(`this instance runs etcd ${v36}`);
    expect(log).not.toContain('"message":"restored backup"');
    expect(existsSync(node.dataDir)).toBe(false);
    expect(pairBackups(await snapshotStore(fleets.bucket).list(snapshotFolder('', group.groupName))).backups.map((b) => b.snapshotKey)).toEqual([newest.key, older.key]);
  });
});
