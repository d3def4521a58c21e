import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../scripts/build.mjs';
import { inspectCluster, leaderUrl } from '../../testbed/agents.js';
import { startAutoScalingShim, type AutoScalingShim } from '../../testbed/autoscaling-shim.js';
import type { SimulatedGroup } from '../../testbed/aws-world.js';
import type { EtcdTestCluster } from '../../testbed/etcd.js';
import { deliverUntilAcknowledged, handlerEnv, invokeBundle, sqsEvent } from '../../testbed/lambda.js';
import { REPO_ROOT, etcdctlBin } from '../../testbed/tools.js';
import { groupWithCluster, openBed, type Bed } from '../support/testbed.js';

// The built lifecycle handler, cold-started per invocation, against a real 5-node etcd on the emulated
// group's instances. CompleteLifecycleAction and RecordLifecycleActionHeartbeat go to the shim (the
// emulator lacks them) through AWS_ENDPOINT_URL_AUTO_SCALING; everything else goes to the emulator.
const run = promisify(execFile);
let bed: Bed;
let bundle: string;
let shim: AutoScalingShim;
let group: SimulatedGroup;
let etcd: EtcdTestCluster;

type BatchResult = { batchItemFailures: Array<{ itemIdentifier: string }> };

const hookBody = (instanceId: string, token: string, groupName = group.groupName) =>
  JSON.stringify({
    ...(JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'events', 'sqs', 'hook-terminating.json'), 'utf8')) as object),
    AutoScalingGroupName: groupName,
    EC2InstanceId: instanceId,
    LifecycleActionToken: token,
    Time: new Date().toISOString(),
  });
const eventBridge = (instanceId: string, token: string) => {
  const event = JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'events', 'eventbridge', 'terminate-lifecycle-action.json'), 'utf8')) as {
    detail: Record<string, string>;
  };
  event.detail = { ...event.detail, AutoScalingGroupName: group.groupName, EC2InstanceId: instanceId, LifecycleActionToken: token };
  return event;
};

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return handlerEnv({
    AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint,
    ETCD_ASG_NAME: group.groupName,
    POWERTOOLS_SERVICE_NAME: 'lifecycle-test',
    ...extra,
  });
}

const invoke = <T>(event: unknown, extra: Record<string, string> = {}) => invokeBundle<T>(bundle, event, env(extra));
const memberNames = async () => (await inspectCluster(etcd.clientUrls().filter((_, i) => etcd.nodes[i]?.process?.running()))).members.map((m) => m.name);
const callsFor = (token: string) => shim.calls.filter((c) => c.params.LifecycleActionToken === token);

beforeAll(async () => {
  bed = openBed('lifecycle');
  const built = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true });
  bundle = built.functions.lifecycle ?? '';
  shim = await startAutoScalingShim({ upstream: process.env.AWS_ENDPOINT_URL as string });
  ({ group, etcd } = await groupWithCluster(bed, 5));
});

afterAll(async () => {
  await shim.close();
  await bed.dispose();
});

describe('lifecycle handler (built bundle)', () => {
  it('removes the member named in a hook message from SQS, then completes the action with its token', async () => {
    const victim = group.instances[0]!;
    // A freshly started cluster refuses membership changes for a few seconds (etcd's strict reconfig
    // check wants every voter connected for 5 s): the record fails, a heartbeat is sent, SQS redelivers.
    const invocations = await deliverUntilAcknowledged(bundle, [hookBody(victim.instanceId, 'tok-sqs')], env());

    expect(await memberNames()).not.toContain(victim.instanceId);
    const completions = callsFor('tok-sqs').filter((c) => c.action === 'CompleteLifecycleAction');
    expect(completions.map((c) => [c.params.LifecycleActionResult, c.params.InstanceId, c.params.LifecycleHookName, c.params.AutoScalingGroupName])).toEqual([
      ['CONTINUE', victim.instanceId, 'etcd-terminate', group.groupName],
    ]);
    // Every attempt heartbeats first (so even one that times out leaves the instance waiting for the next),
    // and each failed attempt once more before it fails the record.
    const heartbeats = callsFor('tok-sqs').filter((c) => c.action === 'RecordLifecycleActionHeartbeat');
    expect(heartbeats).toHaveLength(invocations.length + (invocations.length - 1));
    expect(invocations.at(-1)!.lines.some((l) => l.MembersRemoved === 1)).toBe(true);
    await etcd.stop(victim.instanceId);
  });

  it('handles the same message delivered again: nothing to remove, nothing left to complete, acknowledged', async () => {
    const victim = group.instances[0]!;
    const { result, lines } = await invoke<BatchResult>(sqsEvent([hookBody(victim.instanceId, 'tok-sqs')]));
    expect(result.batchItemFailures).toEqual([]);
    expect(callsFor('tok-sqs').filter((c) => c.action === 'CompleteLifecycleAction')).toHaveLength(2);
    expect(lines.some((l) => l.message === 'termination decision' && l.decision === 'complete' && l.reason === 'not-a-member')).toBe(true);
    expect(lines.some((l) => l.message === 'lifecycle action completed' && l.result === 'already-completed')).toBe(true);
  });

  it('hands leadership over, then removes the leader when the leader terminates (direct EventBridge invocation)', async () => {
    const running = group.instances.filter((i) => etcd.node(i.instanceId).process?.running());
    const url = await leaderUrl(running.map((i) => `http://${i.privateIp}:2379`));
    const leader = running.find((i) => `http://${i.privateIp}:2379` === url);
    if (!leader) throw new Error('no member reports itself as leader');

    const { lines } = await invoke(eventBridge(leader.instanceId, 'tok-leader'));

    expect(await memberNames()).not.toContain(leader.instanceId);
    // The survivors had a leader before the old one left: the handler moved leadership first.
    const moved = lines.find((l) => l.message === 'moved leadership off the terminating member');
    expect(moved).toBeDefined();
    const survivors = running.filter((r) => r !== leader).map((i) => `http://${i.privateIp}:2379`);
    const newLeader = await leaderUrl(survivors);
    expect(newLeader).toBeDefined();
    const { stdout } = await run(etcdctlBin(), ['--endpoints', newLeader!, 'endpoint', 'status', '-w', 'json']);
    expect(BigInt(/"member_id":(\d+)/.exec(stdout)?.[1] ?? '0').toString(16)).toBe(moved?.to);
    expect(callsFor('tok-leader').map((c) => c.action)).toEqual(['RecordLifecycleActionHeartbeat', 'CompleteLifecycleAction']);
    await etcd.stop(leader.instanceId);
    for (const i of running.filter((r) => r !== leader)) await etcd.waitHealthy(i.instanceId);
  });

  it('acknowledges, without touching etcd or the hook, a test notification, a malformed body and another group; completes a non-member', async () => {
    const before = await memberNames();
    const testNote = readFileSync(path.join(REPO_ROOT, 'test', 'events', 'sqs', 'test-notification.json'), 'utf8');
    const { result, lines } = await invoke<BatchResult>(
      sqsEvent([testNote, '{"not": "a hook"', hookBody('i-0aaaaaaaaaaaaaaa1', 'tok-other', 'some-other-group'), hookBody('i-0bbbbbbbbbbbbbbb2', 'tok-stranger')]),
    );
    expect(result.batchItemFailures).toEqual([]);
    expect(await memberNames()).toEqual(before);
    expect(callsFor('tok-other')).toEqual([]);
    expect(callsFor('tok-stranger').map((c) => c.action)).toEqual(['RecordLifecycleActionHeartbeat', 'CompleteLifecycleAction']);
    // EMF keeps every value of a metric added several times in one invocation.
    expect(lines.find((l) => '_aws' in l && 'IgnoredMessages' in l)?.IgnoredMessages).toEqual([1, 1, 1]);
    expect(lines.some((l) => l.message === 'termination decision' && l.decision === 'complete')).toBe(true);
  });

  it('after losing two of five members in sequence the cluster has three voters and takes writes', async () => {
    const live = etcd.clientUrls().filter((_, i) => etcd.nodes[i]?.process?.running());
    const cluster = await inspectCluster(live);
    expect(cluster.members).toHaveLength(3);
    expect(cluster.members.every((m) => !m.isLearner)).toBe(true);
    const put = execFileSync(etcdctlBin(), ['--endpoints', live.join(','), 'put', 'after-two-removals', 'ok'], { encoding: 'utf8' });
    expect(put.trim()).toBe('OK');
  });

  it('etcd entirely down: the record fails (SQS retries it) and a heartbeat keeps the instance waiting', async () => {
    const victim = group.instances.find((i) => etcd.node(i.instanceId).process?.running())!;
    const { result } = await invoke<BatchResult>(sqsEvent([hookBody(victim.instanceId, 'tok-down')]), {
      ETCD_ENDPOINTS: 'http://127.0.0.1:1',
    });
    expect(result.batchItemFailures).toEqual([{ itemIdentifier: 'msg-1' }]);
    expect(callsFor('tok-down').map((c) => c.action)).toEqual(['RecordLifecycleActionHeartbeat', 'RecordLifecycleActionHeartbeat']);
  });
});
