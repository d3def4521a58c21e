import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AutoScalingClient, TerminateInstanceInAutoScalingGroupCommand } from '@aws-sdk/client-auto-scaling';
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
   * queue. CompleteLifecycleAction then really terminates it; the group launches a replacement.
   */
  beginTermination(groupName: string, instanceId: string): Promise<string>;
  /** Instances in Terminating:Wait. */
  readonly waiting: ReadonlySet<string>;
  close(): Promise<void>;
}

const NS = 'http://autoscaling.amazonaws.com/doc/2011-01-01/';

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The part of Auto Scaling the emulator lacks: CompleteLifecycleAction and RecordLifecycleActionHeartbeat
 * (query protocol, as the SDK sends them). They are recorded and answered as AWS does, including
 * "No active Lifecycle Action found" for a token already completed; every other call is passed on to the
 * emulator unchanged. Handlers reach it through the SDK's AWS_ENDPOINT_URL_AUTO_SCALING, so their code is
 * the code that runs in AWS.
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
  const waiting = new Map<string, { groupName: string; token: string }>();
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const upstreamAutoScaling = new AutoScalingClient({ region, endpoint: options.upstream });
  const sqs = new SQSClient({ region, endpoint: options.upstream });
  const server: Server = createServer((req, res) => {
    void (async () => {
      const raw = await body(req);
      const params = Object.fromEntries(new URLSearchParams(raw.toString('utf8')));
      const action = params.Action;
      if (action === 'CompleteLifecycleAction' || action === 'RecordLifecycleActionHeartbeat') {
        calls.push({ action, params });
        const token = params.LifecycleActionToken ?? '';
        if (completed.has(token)) {
          res.writeHead(400, { 'content-type': 'text/xml' }).end(
            `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>ValidationError</Code>` +
              `<Message>No active Lifecycle Action found with token ${token}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
          );
          return;
        }
        if (action === 'CompleteLifecycleAction') {
          completed.add(token);
          const instanceId = params.InstanceId ?? '';
          const held = waiting.get(instanceId);
          if (held && held.token === token) {
            waiting.delete(instanceId);
            await upstreamAutoScaling.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: false }));
          }
          await options.onComplete?.(params);
        }
        res
          .writeHead(200, { 'content-type': 'text/xml' })
          .end(`<${action}Response xmlns="${NS}"><${action}Result/><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`);
        return;
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
    async beginTermination(groupName: string, instanceId: string): Promise<string> {
      if (!options.lifecycleQueueUrl) throw new Error('the shim was started without a lifecycle queue');
      const token = randomUUID();
      waiting.set(instanceId, { groupName, token });
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
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
