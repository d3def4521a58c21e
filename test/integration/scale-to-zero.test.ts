import path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pairBackups, snapshotFolder } from '../../core/domain/backups.js';
import { build } from '../../scripts/build.mjs';
import { startAutoScalingShim, type AutoScalingShim } from '../../testbed/autoscaling-shim.js';
import { handlerEnv, invokeBundle, type Invocation } from '../../testbed/lambda.js';
import { startLambdaService, type LambdaService } from '../../testbed/lambda-service.js';
import { pollOnce } from '../../testbed/sqs-poller.js';
import { waitFor } from '../../testbed/wait.js';
import { snapshotStore } from '../support/recovery.js';
import { groupWithCluster, openBed, uniqueName, type Bed } from '../support/testbed.js';

// A scale-in to zero: the last member's instance waits in Terminating:Wait while the lifecycle function hands
// its final backup to the backup function (an asynchronous invocation), which takes it, then lets it go.
let bed: Bed;
let shim: AutoScalingShim;
let lambda: LambdaService;
let bundles: { lifecycle: string; backup: string };
const bucket = uniqueName('zero').toLowerCase();

beforeAll(async () => {
  bed = openBed('scale-to-zero');
  const built = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true });
  bundles = { lifecycle: built.functions.lifecycle ?? '', backup: built.functions.backup ?? '' };
  await new S3Client({ forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: bucket }));
});
afterAll(async () => {
  await lambda.close();
  await shim.close();
  await bed.dispose();
});

describe('scale-in to zero', () => {
  it('backs the last member up in the backup function while its instance waits, then lets it go; the member is never removed', async () => {
    // Prepare: a one-member cluster with keys, the terminating hook and the backup function behind Lambda's API
    const { group, etcd } = await groupWithCluster(bed, 1);
    const last = group.instances[0]!;
    const queueUrl = (await new SQSClient({}).send(new CreateQueueCommand({ QueueName: uniqueName('zero-lifecycle') }))).QueueUrl ?? '';
    shim = await startAutoScalingShim({ upstream: process.env.AWS_ENDPOINT_URL as string, lifecycleQueueUrl: queueUrl });
    const env = { ETCD_ASG_NAME: group.groupName, BACKUP_BUCKET: bucket, AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint };
    lambda = await startLambdaService({ backup: { bundle: bundles.backup, env: () => handlerEnv(env) } });
    const client = new Etcd3({ hosts: etcd.clientUrls() });
    let lastRevision: bigint;
    try {
      for (let i = 0; i < 100; i += 1) await client.put(`k/${i}`).value('v').exec();
      lastRevision = BigInt((await client.get('k/99').exec()).header.revision);
    } finally {
      client.close();
    }

    // Act: Auto Scaling terminates it with the desired capacity lowered (a scale-in); the event source
    // mapping hands the hook's message to the lifecycle function
    await shim.beginTermination(group.groupName, last.instanceId, true);
    const lifecycle: Array<Invocation<{ batchItemFailures: unknown[] }>> = [];
    await waitFor(
      'the lifecycle function to take the message',
      async () => {
        const { received } = await pollOnce(
          queueUrl,
          async (event) => {
            const invocation = await invokeBundle<{ batchItemFailures: Array<{ itemIdentifier: string }> }>(
              bundles.lifecycle,
              event,
              handlerEnv({ ...env, ETCD_AWS_BACKUP_FUNCTION: 'backup', AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint }),
            );
            lifecycle.push(invocation);
            return invocation.result;
          },
          { batchSize: 1 },
        );
        return received > 0;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    await waitFor('the instance to be let go', () => !shim.waiting.has(last.instanceId), { timeoutMs: 90_000, intervalMs: 250 });
    await waitFor('the backup function to return', () => lambda.invocations[0]?.outcome, { timeoutMs: 30_000, intervalMs: 100 });

    // Assess: acknowledged at once, with the backup handed over, not the member removed
    expect(lifecycle[0]?.result.batchItemFailures).toEqual([]);
    expect(lifecycle[0]?.lines.some((l) => l.message === 'termination decision' && l.decision === 'keep-last-voter')).toBe(true);
    expect(lifecycle[0]?.lines.some((l) => l.message === 'removed member')).toBe(false);
    // The backup function, invoked asynchronously with the notice, uploaded a backup holding every write
    const [backup] = lambda.invocations;
    expect(backup).toMatchObject({ functionName: 'backup', type: 'Event', payload: { finalBackupFor: { instanceId: last.instanceId } } });
    expect(backup?.outcome).toMatchObject({ result: { status: 'uploaded' } });
    const { backups } = pairBackups(await snapshotStore(bucket).list(snapshotFolder('', group.groupName)));
    expect(backups).toHaveLength(1);
    const meta = await snapshotStore(bucket).readMetadata(backups[0]!.metadataKey);
    expect(BigInt(meta.revision.before)).toBeGreaterThanOrEqual(lastRevision);
    // The hook was kept alive, and completed only after the backup (CONTINUE, by the backup function)
    const calls = shim.calls.map((c) => c.action);
    expect(calls.filter((a) => a === 'RecordLifecycleActionHeartbeat').length).toBeGreaterThanOrEqual(2);
    expect(calls.at(-1)).toBe('CompleteLifecycleAction');
    expect(shim.calls.at(-1)?.params.LifecycleActionResult).toBe('CONTINUE');
  });
});
