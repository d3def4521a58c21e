import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AutoScalingClient,
  DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
  TerminateInstanceInAutoScalingGroupCommand,
} from '@aws-sdk/client-auto-scaling';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';

/** One lifecycle call the shim answered itself. */
export interface LifecycleCall {
  readonly action: 'CompleteLifecycleAction' | 'RecordLifecycleActionHeartbeat';
  readonly params: Readonly<Record<string, string>>;
}

export interface AutoScalingShim {
  /** Value for AWS_ENDPOINT_URL_AUTO_SCALING. */
  readonly endpoint: string;
  readonly calls: readonly LifecycleCall[];
  /**
   * What TerminateInstanceInAutoScalingGroup does with a termination lifecycle hook: the instance enters
   * Terminating:Wait (as every Describe through the shim reports it) and the hook's message goes to the
   * queue. CompleteLifecycleAction then really terminates it; the group launches a replacement unless
   * `decrement` (ShouldDecrementDesiredCapacity, or a scale-in) lowered the desired capacity instead.
   */
  beginTermination(groupName: string, instanceId: string, decrement?: boolean): Promise<string>;
  /** Instances in Terminating:Wait. */
  readonly waiting: ReadonlySet<string>;
  close(): Promise<void>;
}

const NS = 'http://autoscaling.amazonaws.com/doc/2011-01-01/';

function validationError(message: string): string {
  return (
    `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>ValidationError</Code>` +
    `<Message>${message}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`
  );
}

/**
 * Which instances a scale-in terminates: AWS's default policy balances Availability Zones first (take from
 * the zone with the most instances), then prefers the oldest launch configuration; here, among equals, the
 * newest instance (the highest ID), so a scale-in after a scale-out removes what it added.
 */
export function scaleInVictims(instances: ReadonlyArray<{ InstanceId?: string; AvailabilityZone?: string }>, count: number): string[] {
  const left = instances.map((i) => ({ id: i.InstanceId ?? '', zone: i.AvailabilityZone ?? '' }));
  const victims: string[] = [];
  for (let n = 0; n < count && left.length > 0; n += 1) {
    const perZone = new Map<string, number>();
    for (const i of left) perZone.set(i.zone, (perZone.get(i.zone) ?? 0) + 1);
    const most = Math.max(...perZone.values());
    const candidates = left.filter((i) => perZone.get(i.zone) === most).sort((a, b) => b.id.localeCompare(a.id));
    const victim = candidates[0]!;
    victims.push(victim.id);
    left.splice(left.indexOf(victim), 1);
  }
  return victims;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The part of Auto Scaling the emulator lacks, played on one machine: CompleteLifecycleAction and
 * RecordLifecycleActionHeartbeat (query protocol, as the SDK sends them), recorded and answered as AWS does,
 * including "No active Lifecycle Action found" for a token already completed; and, when started with a
 * lifecycle queue, the termination hook itself: TerminateInstanceInAutoScalingGroup and a scale-in through
 * SetDesiredCapacity put instances in Terminating:Wait and notify the queue instead of terminating them.
 * Every other call is passed on to the emulator unchanged. Handlers and agents reach it through the SDK's
 * AWS_ENDPOINT_URL_AUTO_SCALING, so their code is the code that runs in AWS.
 */
export async function startAutoScalingShim(options: {
  upstream: string;
  onComplete?: (params: Readonly<Record<string, string>>) => Promise<void> | void;
  /** The queue the termination hook notifies (needed by beginTermination). */
  lifecycleQueueUrl?: string;
  hookName?: string;
}): Promise<AutoScalingShim> {
  const calls: LifecycleCall[] = [];
  const completed = new Set<string>();
  const waiting = new Map<string, { groupName: string; token: string; decrement: boolean }>();
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const upstreamAutoScaling = new AutoScalingClient({ region, endpoint: options.upstream });
  const sqs = new SQSClient({ region, endpoint: options.upstream });
  async function begin(groupName: string, instanceId: string, decrement: boolean): Promise<string> {
    if (!options.lifecycleQueueUrl) throw new Error('the shim was started without a lifecycle queue');
    const token = randomUUID();
    waiting.set(instanceId, { groupName, token, decrement });
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: options.lifecycleQueueUrl,
        MessageBody: JSON.stringify({
          Origin: 'AutoScalingGroup',
          Destination: 'EC2',
          LifecycleHookName: options.hookName ?? 'etcd-terminate',
          AccountId: '123456789012',
          RequestId: randomUUID(),
          LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
          AutoScalingGroupName: groupName,
          Service: 'AWS Auto Scaling',
          Time: new Date().toISOString(),
          EC2InstanceId: instanceId,
          LifecycleActionToken: token,
        }),
      }),
    );
    return token;
  }
  async function groupOf(instanceId: string): Promise<string | undefined> {
    const out = await upstreamAutoScaling.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] }));
    return out.AutoScalingInstances?.[0]?.AutoScalingGroupName;
  }
  const server: Server = createServer((req, res) => {
    void (async () => {
      const raw = await body(req);
      const params = Object.fromEntries(new URLSearchParams(raw.toString('utf8')));
      const action = params.Action;
      if (action === 'CompleteLifecycleAction' || action === 'RecordLifecycleActionHeartbeat') {
        calls.push({ action, params });
        const token = params.LifecycleActionToken ?? '';
        if (completed.has(token)) {
          res.writeHead(400, { 'content-type': 'text/xml' }).end(validationError(`No active Lifecycle Action found with token ${token}`));
          return;
        }
        if (action === 'CompleteLifecycleAction') {
          completed.add(token);
          const instanceId = params.InstanceId ?? '';
          const held = waiting.get(instanceId);
          if (held && held.token === token) {
            waiting.delete(instanceId);
            await upstreamAutoScaling.send(
              new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: held.decrement }),
            );
          }
          await options.onComplete?.(params);
        }
        res
          .writeHead(200, { 'content-type': 'text/xml' })
          .end(`<${action}Response xmlns="${NS}"><${action}Result/><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`);
        return;
      }
      if (options.lifecycleQueueUrl && action === 'TerminateInstanceInAutoScalingGroup') {
        // The group has a termination hook: the instance waits for the lifecycle handler instead of going.
        const instanceId = params.InstanceId ?? '';
        const groupName = await groupOf(instanceId);
        if (!groupName) {
          res.writeHead(400, { 'content-type': 'text/xml' }).end(validationError(`Instance Id not found - No managed instance found for instance ID: ${instanceId}`));
          return;
        }
        if (!waiting.has(instanceId)) await begin(groupName, instanceId, params.ShouldDecrementDesiredCapacity === 'true');
        res
          .writeHead(200, { 'content-type': 'text/xml' })
          .end(
            `<${action}Response xmlns="${NS}"><${action}Result><Activity><ActivityId>${randomUUID()}</ActivityId>` +
              `<AutoScalingGroupName>${groupName}</AutoScalingGroupName><StatusCode>InProgress</StatusCode></Activity></${action}Result>` +
              `<ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`,
          );
        return;
      }
      if (options.lifecycleQueueUrl && action === 'SetDesiredCapacity') {
        // A scale-in through the hook: the surplus instances wait for the lifecycle handler, each lowering
        // the desired capacity when it goes. A scale-out goes straight to the emulator.
        const groupName = params.AutoScalingGroupName ?? '';
        const wanted = Number(params.DesiredCapacity);
        const group = (await upstreamAutoScaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }))).AutoScalingGroups?.[0];
        const staying = (group?.Instances ?? []).filter((i) => !waiting.has(i.InstanceId ?? ''));
        if (group && Number.isInteger(wanted) && wanted < staying.length) {
          for (const victim of scaleInVictims(staying, staying.length - wanted)) await begin(groupName, victim, true);
          res
            .writeHead(200, { 'content-type': 'text/xml' })
            .end(`<${action}Response xmlns="${NS}"><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`);
          return;
        }
      }
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter((e): e is [string, string] => typeof e[1] === 'string' && e[0] !== 'host' && e[0] !== 'content-length'),
      );
      const upstream = await fetch(`${options.upstream}${req.url ?? '/'}`, {
        method: req.method ?? 'POST',
        headers,
        body: raw.length > 0 ? raw : undefined,
      });
      const hopByHop = new Set(['content-encoding', 'transfer-encoding', 'content-length', 'connection', 'keep-alive']);
      let answer = Buffer.from(await upstream.arrayBuffer());
      if (waiting.size > 0 && (action === 'DescribeAutoScalingGroups' || action === 'DescribeAutoScalingInstances')) {
        let xml = answer.toString('utf8');
        for (const id of waiting.keys()) {
          xml = xml.replace(new RegExp(`(<InstanceId>${id}</InstanceId>[\\s\\S]*?<LifecycleState>)[^<]*(</LifecycleState>)`, 'g'), '$1Terminating:Wait$2');
        }
        answer = Buffer.from(xml, 'utf8');
      }
      res
        .writeHead(upstream.status, Object.fromEntries([...upstream.headers.entries()].filter(([k]) => !hopByHop.has(k))))
        .end(answer);
    })().catch((error: unknown) => {
      res.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    get waiting(): ReadonlySet<string> {
      return new Set(waiting.keys());
    },
    beginTermination: (groupName: string, instanceId: string, decrement = false) => begin(groupName, instanceId, decrement),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
