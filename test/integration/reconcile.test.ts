import path from 'node:path';
import { AutoScalingClient, DescribeAutoScalingInstancesCommand } from '@aws-sdk/client-auto-scaling';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3SeedCoordinator } from '../../core/aws/seed-coordinator.js';
import { build } from '../../scripts/build.mjs';
import { inspectCluster } from '../../testbed/agents.js';
import { scaleOut, terminateInGroup } from '../../testbed/aws-world.js';
import { handlerEnv, invokeBundle } from '../../testbed/lambda.js';
import { waitFor } from '../../testbed/wait.js';
import { groupWithCluster, openBed, uniqueName, type Bed } from '../support/testbed.js';

// The built reconcile handler against real etcd clusters on the emulated group's instances.
let bed: Bed;
let bundle: string;

type Result = {
  reachable: boolean;
  members: number;
  healthyMembers: number;
  removed?: { name: string; reason: string; result: string };
  kept: Array<{ name: string; reason: string }>;
  markedUnhealthy?: string;
  dbSizeBytes: number;
  dbQuotaPercent: number;
};

/**
 * One scheduled run that found the cluster. Right after a node dies the others may still be electing a
 * leader; the schedule simply runs again, so the test does too, within a bounded deadline.
 */
const invoke = (groupName: string, extra: Record<string, string> = {}) =>
  waitFor('a reconcile run that reaches the cluster', async () => {
    const out = await invokeBundle<Result>(bundle, {}, handlerEnv({ ETCD_ASG_NAME: groupName, ...extra }));
    return out.result.reachable ? out : undefined;
  }, { timeoutMs: 60_000, intervalMs: 500 });

beforeAll(async () => {
  bed = openBed('reconcile');
  bundle = (await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true })).functions.reconcile ?? '';
});

afterAll(async () => {
  await bed.dispose();
});

describe('reconcile handler (built bundle)', () => {
  it('removes the member of an instance that left the group without a lifecycle hook, once the grace period is over', async () => {
    // Prepare: an instance dies and is terminated; no hook ran, so its member stays
    const { group, etcd } = await groupWithCluster(bed, 3);
    const dead = group.instances[2]!;
    await etcd.kill(dead.instanceId);
    await terminateInGroup(group.groupName, dead.instanceId, false);

    // Act + Assess: within the grace period nothing changes
    const early = await invoke(group.groupName, { ETCD_AWS_ORPHAN_GRACE_MS: '600000' });
    expect(early.result.removed).toBeUndefined();
    expect(early.result.kept).toEqual([expect.objectContaining({ name: dead.instanceId, reason: 'within-grace-period' })]);
    expect(early.lines.some((l) => '_aws' in l && l.Orphans === 1)).toBe(true);

    // Act + Assess: after it, the member is removed
    const later = await invoke(group.groupName, { ETCD_AWS_ORPHAN_GRACE_MS: '0' });
    expect(later.result.removed).toMatchObject({ name: dead.instanceId, reason: 'instance-gone', result: 'removed' });
    const after = await inspectCluster(group.instances.slice(0, 2).map((i) => `http://${i.privateIp}:2379`));
    expect(after.members.map((m) => m.name).sort()).toEqual(group.instances.slice(0, 2).map((i) => i.instanceId).sort());
  });

  it('keeps the member of an instance that left the group while its etcd still answers (standby, detached), whatever the group says', async () => {
    // Prepare: b's etcd is down (its instance stays in the group); c left the group but its etcd still serves
    const { group, etcd } = await groupWithCluster(bed, 3);
    const [, b, c] = group.instances;
    await etcd.kill(b!.instanceId);
    await terminateInGroup(group.groupName, c!.instanceId, false);

    const { result } = await invoke(group.groupName, { ETCD_AWS_ORPHAN_GRACE_MS: '0' });

    expect(result.reachable).toBe(true);
    expect(result.removed).toBeUndefined();
    expect(result.kept).toEqual([expect.objectContaining({ name: c!.instanceId, reason: 'member-answers' })]);
    const after = await inspectCluster([etcd.node(group.instances[0]!.instanceId).clientUrl]);
    expect(after.members).toHaveLength(3);
  });

  it('marks unhealthy an instance whose agent never registered, and only that one; reports the database against its quota', async () => {
    // Prepare: a cluster whose members registered (as their agents do), and one more instance whose agent never ran
    const { group } = await groupWithCluster(bed, 3);
    const bucket = uniqueName('reconcile').toLowerCase();
    const s3 = new S3Client({ forcePathStyle: true });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const seeds = new S3SeedCoordinator(s3, bucket, '', group.groupName);
    for (const i of group.instances) await seeds.register({ instanceId: i.instanceId, hasData: true, at: Date.now() });
    const [silent] = await scaleOut(group.groupName, 1);
    const quota = String(64 * 1024 * 1024);

    // Act: scheduled runs; the grace period (1 s) is over once the instance has run that long
    const { result, lines } = await waitFor(
      'a reconcile run that marks it',
      async () => {
        const out = await invoke(group.groupName, { BACKUP_BUCKET: bucket, ETCD_AWS_AGENT_START_GRACE_MS: '1000', ETCD_QUOTA_BACKEND_BYTES: quota });
        return out.result.markedUnhealthy ? out : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );

    // Assess: that instance, in Auto Scaling's own view; the members untouched; the size metrics published
    expect(result.markedUnhealthy).toBe(silent!.instanceId);
    const described = await new AutoScalingClient({}).send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [silent!.instanceId, group.instances[0]!.instanceId] }));
    const health = Object.fromEntries((described.AutoScalingInstances ?? []).map((i) => [i.InstanceId ?? '', (i.HealthStatus ?? '').toUpperCase()]));
    expect(health).toEqual({ [silent!.instanceId]: 'UNHEALTHY', [group.instances[0]!.instanceId]: 'HEALTHY' });
    expect(result.dbSizeBytes).toBeGreaterThan(0);
    expect(result.dbQuotaPercent).toBeCloseTo((result.dbSizeBytes / Number(quota)) * 100, 0);
    expect(lines.some((l) => '_aws' in l && l.InstancesWithoutAgentMarked === 1 && typeof l.DbQuotaPercent === 'number')).toBe(true);
  });
});
