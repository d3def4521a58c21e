import { randomUUID } from 'node:crypto';
import { AutoScalingClient, TerminateInstanceInAutoScalingGroupCommand } from '@aws-sdk/client-auto-scaling';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { ActionParams } from './protocol.js';

interface Held {
  readonly groupName: string;
  readonly token: string;
  readonly decrement: boolean;
  deadline: number;
}

/**
 * The terminating lifecycle hook (`autoscaling:EC2_INSTANCE_TERMINATING`), as Auto Scaling runs it: the instance
 * waits in Terminating:Wait (still running) while the hook's message is in the queue; CompleteLifecycleAction
 * (by token, or by instance ID and hook name), or the heartbeat timeout with the default result CONTINUE,
 * lets it go; RecordLifecycleActionHeartbeat restarts the timeout. Going means terminating it in the emulator,
 * with the group's desired capacity lowered (a scale-in) or not (the group replaces it).
 */
export class TerminationHook {
  private readonly held = new Map<string, Held>();
  private readonly finished = new Set<string>();
  private readonly sqs: SQSClient;

  constructor(
    private readonly options: {
      readonly upstream: AutoScalingClient;
      readonly region: string;
      readonly upstreamEndpoint: string;
      readonly queueUrl: string;
      readonly hookName: string;
      readonly heartbeatTimeoutMs: number;
      readonly onBegin?: (instanceId: string) => void;
      readonly say: (message: string) => void;
    },
  ) {
    this.sqs = new SQSClient({ region: options.region, endpoint: options.upstreamEndpoint });
  }

  get hookName(): string {
    return this.options.hookName;
  }

  /** Instances in Terminating:Wait. */
  waiting(): ReadonlySet<string> {
    return new Set(this.held.keys());
  }

  isWaiting(instanceId: string): boolean {
    return this.held.has(instanceId);
  }

  /** The instance enters Terminating:Wait and the hook's message goes to the queue; returns its token. */
  async begin(groupName: string, instanceId: string, decrement: boolean): Promise<string> {
    const existing = this.held.get(instanceId);
    if (existing) return existing.token;
    const token = randomUUID();
    this.held.set(instanceId, { groupName, token, decrement, deadline: Date.now() + this.options.heartbeatTimeoutMs });
    this.options.onBegin?.(instanceId);
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.options.queueUrl,
        MessageBody: JSON.stringify({
          Origin: 'AutoScalingGroup',
          Destination: 'EC2',
          LifecycleHookName: this.options.hookName,
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

  /** The held instance a call names: by its token, or by instance ID and this hook's name. */
  private find(params: ActionParams): [string, Held] | undefined {
    if (params.LifecycleActionToken) {
      return [...this.held.entries()].find(([, h]) => h.token === params.LifecycleActionToken);
    }
    const held = params.InstanceId === undefined ? undefined : this.held.get(params.InstanceId);
    return held && params.LifecycleHookName === this.options.hookName ? [params.InstanceId as string, held] : undefined;
  }

  /** True when the call is this hook's: a token it issued, or its hook name. */
  owns(params: ActionParams): boolean {
    if (params.LifecycleActionToken) return this.finished.has(params.LifecycleActionToken) || this.find(params) !== undefined;
    return params.LifecycleHookName === this.options.hookName;
  }

  /** CompleteLifecycleAction: false when there is no active action (already completed, or timed out). */
  async complete(params: ActionParams): Promise<boolean> {
    const hit = this.find(params);
    if (!hit) return false;
    await this.release(hit[0], hit[1]);
    return true;
  }

  /** RecordLifecycleActionHeartbeat: false when there is no active action. */
  heartbeat(params: ActionParams): boolean {
    const hit = this.find(params);
    if (!hit) return false;
    hit[1].deadline = Date.now() + this.options.heartbeatTimeoutMs;
    return true;
  }

  /** The heartbeat timeout: the default result (CONTINUE) for every action that outlived it. */
  async tick(): Promise<void> {
    for (const [instanceId, held] of [...this.held.entries()]) {
      if (Date.now() < held.deadline) continue;
      this.options.say(`the terminating hook of ${instanceId} timed out; Auto Scaling continues its termination`);
      await this.release(instanceId, held);
    }
  }

  private async release(instanceId: string, held: Held): Promise<void> {
    this.held.delete(instanceId);
    this.finished.add(held.token);
    await this.options.upstream
      .send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: held.decrement }))
      .catch((error: unknown) => this.options.say(`${instanceId} could not be terminated (gone already?): ${(error as Error).message}`));
  }
}
