import { readFileSync } from 'node:fs';
import path from 'node:path';
import { EC2Client, StopInstancesCommand } from '@aws-sdk/client-ec2';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { InstanceIdentity } from '../../core/ports.js';
import { build } from '../../scripts/build.mjs';
import { AgentFleet, FAST_TIMING, inspectCluster, waitForVotingMembers } from '../../testbed/agents.js';
import { createSimulatedGroup, terminateInGroup } from '../../testbed/aws-world.js';
import { clusterContents } from '../../testbed/data.js';
import { waitFor } from '../../testbed/wait.js';
import { openBed, uniqueName, type Bed } from '../support/testbed.js';

let bed: Bed;
let bundle: string;
const bucket = uniqueName('quorum').toLowerCase();
let fleet: AgentFleet | undefined;

beforeAll(async () => {
  bed = openBed('quorum');
  ({ agent: bundle } = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true }));
  await new S3Client({ forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: bucket }));
});
afterEach(async () => {
  await fleet?.closeAll();
  fleet = undefined;
});
afterAll(async () => {
  await bed.dispose();
});

const urls = (instances: readonly InstanceIdentity[]) => instances.map((i) => `http://${i.privateIp}:2379`);
const names = (instances: readonly InstanceIdentity[]) => instances.map((i) => i.instanceId);

/** The agent's JSON log lines with this message. */
function logged(agents: AgentFleet, instance: InstanceIdentity, message: string): Array<Record<string, unknown>> {
  return readFileSync(agents.node(instance.instanceId).logFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.message === message);
}

/** A group of three whose agents formed one cluster, with keys written through it. */
async function formedClusterWithData(label: string) {
  const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 3 });
  fleet = new AgentFleet({
    processes: bed.processes,
    workDir: path.join(bed.workDir, uniqueName(label)),
    bundle,
    bucket,
    awsEndpoint: process.env.AWS_ENDPOINT_URL as string,
  });
  const agents = fleet;
  await Promise.all(group.instances.map((i) => agents.start(i)));
  const cluster = await waitForVotingMembers(urls(group.instances), names(group.instances));
  const client = new Etcd3({ hosts: urls(group.instances) });
  try {
    await Promise.all(Array.from({ length: 300 }, (_, i) => client.put(`kept/${String(i).padStart(4, '0')}`).value(`v${i}`).exec()));
  } finally {
    client.close();
  }
  const contents = await clusterContents(urls(group.instances), 'kept');
  return { group, agents, cluster, contents };
}

describe('permanent loss of a majority', () => {
  it('2 of 3 instances terminated: the survivor forces a new cluster and the replacements join it; same cluster ID, every key kept', async () => {
    // Prepare
    const { group, agents, cluster, contents } = await formedClusterWithData('forced');
    const [survivor, ...doomed] = group.instances as [InstanceIdentity, ...InstanceIdentity[]];

    // Act: two instances die outside the lifecycle hook (no member removed); the group replaces them
    await Promise.all(doomed.map((i) => agents.kill(i.instanceId)));
    const replacements: InstanceIdentity[] = [];
    for (const i of doomed) {
      const r = await terminateInGroup(group.groupName, i.instanceId, true);
      if (!r) throw new Error('the emulated group launched no replacement');
      replacements.push(r);
    }
    await Promise.all(replacements.map((r) => agents.start(r)));
    const after = await waitForVotingMembers(urls([survivor, ...replacements]), names([survivor, ...replacements]), 120_000);

    // Assess
    expect(after.clusterIds).toEqual(cluster.clusterIds);
    expect(after.members.find((m) => m.name === survivor.instanceId)?.id).toBe(cluster.members.find((m) => m.name === survivor.instanceId)?.id);
    const back = await clusterContents(urls([survivor, ...replacements]), 'kept');
    expect(back.count).toBe(300);
    expect(back.digest).toBe(contents.digest);
    const forced = logged(agents, survivor, 'forcing a new cluster from this member');
    expect(forced).toHaveLength(1);
    expect(forced[0]?.gone).toEqual(expect.arrayContaining(doomed.map((d) => expect.stringContaining(d.instanceId) as unknown)));
    for (const r of replacements) expect(logged(agents, r, 'added as learner')).toHaveLength(1);
  });

  it('a member whose instance was killed but not terminated (then stopped) never causes a force', async () => {
    // Prepare
    const { group, agents, cluster } = await formedClusterWithData('declined');
    const [survivor, terminated, killedOnly] = group.instances as [InstanceIdentity, InstanceIdentity, InstanceIdentity];
    const declines = () => logged(agents, survivor, 'not forcing a new cluster');

    // Act: both peers die; only one instance is terminated, the other's instance still runs in EC2
    await Promise.all([agents.kill(terminated.instanceId), agents.kill(killedOnly.instanceId)]);
    await terminateInGroup(group.groupName, terminated.instanceId, false);

    // Assess: the survivor decides, again and again, that a quorum could come back, and changes nothing
    await waitFor('three declines by the survivor', () => declines().length >= 3, { timeoutMs: 60_000, intervalMs: 250 });
    expect(declines()[0]).toMatchObject({ level: 'WARN', reason: 'quorum-still-possible' });
    expect(String(declines()[0]?.remaining)).toContain(`${killedOnly.instanceId}(`);
    expect(String(declines()[0]?.remaining)).toContain('instance-running');

    // Act: the killed instance is now stopped in EC2 (it would come back with its data)
    await new EC2Client({}).send(new StopInstancesCommand({ InstanceIds: [killedOnly.instanceId] }));
    const seen = declines().length;
    const stoppedDeclines = () => declines().slice(seen).filter((d) => String(d.remaining).includes('instance-stopped'));
    await waitFor('a decline naming the stopped instance', () => stoppedDeclines().length > 0, { timeoutMs: 60_000, intervalMs: 250 });
    // Still declining two whole grace periods later (timestamps of logged decisions, not a sleep).
    const firstAt = Date.parse(String(stoppedDeclines()[0]?.timestamp));
    await waitFor(
      'declines two grace periods after the first one',
      () => stoppedDeclines().some((d) => Date.parse(String(d.timestamp)) >= firstAt + 2 * Number(FAST_TIMING.ETCD_AWS_QUORUM_LOSS_GRACE_MS)),
      { timeoutMs: 60_000, intervalMs: 250 },
    );

    // Assess
    expect(logged(agents, survivor, 'forcing a new cluster from this member')).toEqual([]);
    expect(declines().every((d) => d.reason === 'quorum-still-possible')).toBe(true);
    // The survivor's own view (it has no quorum to answer a linearizable member list).
    const now = await inspectCluster(urls([survivor]), { local: true });
    expect(now.clusterIds).toEqual(cluster.clusterIds);
    expect(now.members.map((m) => m.id).sort()).toEqual(cluster.members.map((m) => m.id).sort());
  });
});
