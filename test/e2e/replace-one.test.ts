import path from 'node:path';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { build } from '../../scripts/build.mjs';
import { AgentFleet, inspectCluster, waitForVotingMembers } from '../../testbed/agents.js';
import { startAutoScalingShim, type AutoScalingShim } from '../../testbed/autoscaling-shim.js';
import { createSimulatedGroup, describeGroupInstances } from '../../testbed/aws-world.js';
import { handlerEnv, invokeBundle } from '../../testbed/lambda.js';
import { pollOnce } from '../../testbed/sqs-poller.js';
import { waitFor } from '../../testbed/wait.js';
import { openBed, uniqueName, type Bed } from '../support/testbed.js';

// AWS's termination flow on one machine: the instance enters Terminating:Wait and the hook's message goes to
// SQS; a poller hands the batch to the built lifecycle handler and deletes what it acknowledges; the
// handler removes the member and completes the action; the group terminates the instance and launches a
// replacement, whose agent joins.
let bed: Bed;
let built: Awaited<ReturnType<typeof build>>;
let shim: AutoScalingShim;
let queueUrl: string;
const bucket = uniqueName('replace').toLowerCase();

beforeAll(async () => {
  bed = openBed('replace-one');
  built = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true });
  await new S3Client({}).send(new CreateBucketCommand({ Bucket: bucket }));
  queueUrl = (await new SQSClient({}).send(new CreateQueueCommand({ QueueName: uniqueName('lifecycle') }))).QueueUrl ?? '';
  shim = await startAutoScalingShim({ upstream: process.env.AWS_ENDPOINT_URL as string, lifecycleQueueUrl: queueUrl });
});

afterAll(async () => {
  await shim.close();
  await bed.dispose();
});

describe('replace one node the way Auto Scaling does', () => {
  it('removes the terminating member through the hook, then the replacement joins: same cluster, all voting', async () => {
    // Prepare: three agents build the cluster, every Auto Scaling call going through the shim
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 3 });
    const agents = new AgentFleet({
      processes: bed.processes,
      workDir: path.join(bed.workDir, 'agents'),
      bundle: built.agent,
      bucket,
      awsEndpoint: process.env.AWS_ENDPOINT_URL as string,
      env: { AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint },
    });
    try {
      await Promise.all(group.instances.map((i) => agents.start(i)));
      const urls = (xs: typeof group.instances) => xs.map((i) => `http://${i.privateIp}:2379`);
      const before = await waitForVotingMembers(urls(group.instances), group.instances.map((i) => i.instanceId));
      const [victim, ...survivors] = group.instances;

      // Act: terminate with the hook, and run the event source mapping until the instance is released
      const token = await shim.beginTermination(group.groupName, victim!.instanceId);
      const seen = await new AwsInstanceInventory(new AutoScalingClient({ endpoint: shim.endpoint }), new EC2Client({})).instancesOf(group.groupName);
      expect(seen.find((i) => i.instanceId === victim!.instanceId)?.lifecycleState).toBe('Terminating:Wait');
      const lifecycleEnv = handlerEnv({ AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint, ETCD_ASG_NAME: group.groupName });
      await waitFor(
        `the lifecycle handler to release ${victim!.instanceId} from Terminating:Wait`,
        async () => {
          await pollOnce(queueUrl, async (event) => (await invokeBundle<{ batchItemFailures: Array<{ itemIdentifier: string }> }>(built.functions.lifecycle!, event, lifecycleEnv)).result);
          return !shim.waiting.has(victim!.instanceId);
        },
        { timeoutMs: 90_000, intervalMs: 200 },
      );
      await agents.kill(victim!.instanceId); // the instance is gone (etcd already left when its member was removed)
      const replacement = (await describeGroupInstances(group.groupName)).find((i) => !group.instances.some((g) => g.instanceId === i.instanceId));
      if (!replacement) throw new Error('the group launched no replacement after the termination completed');
      await agents.start(replacement);
      const nodes = [...survivors, replacement];
      const after = await waitForVotingMembers(urls(nodes), nodes.map((i) => i.instanceId), 90_000);

      // Assess
      expect(after.clusterIds).toEqual(before.clusterIds);
      expect(after.members.some((m) => m.name === victim!.instanceId)).toBe(false);
      expect(shim.calls.filter((c) => c.params.LifecycleActionToken === token && c.action === 'CompleteLifecycleAction')).toHaveLength(1);
      expect((await inspectCluster(urls(nodes))).members).toHaveLength(3);
    } finally {
      await agents.closeAll();
    }
  });
});
