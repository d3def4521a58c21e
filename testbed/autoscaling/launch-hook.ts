import { AutoScalingClient, TerminateInstanceInAutoScalingGroupCommand } from '@aws-sdk/client-auto-scaling';
import type { ActionParams } from './protocol.js';

/**
 * The launching lifecycle hook (`autoscaling:EC2_INSTANCE_LAUNCHING`), as Auto Scaling runs it: every new
 * instance of the group waits in Pending:Wait (it runs, but is not in service and gets no load balancer
 * traffic) until CompleteLifecycleAction: CONTINUE puts it in service; ABANDON, or the heartbeat timeout with
 * the default result ABANDON, terminates it and the group launches another. RecordLifecycleActionHeartbeat
 * restarts the timeout. Instances are noticed when a Describe answer first lists them.
 */
export class LaunchHook {
  private readonly pending = new Map<string, { deadline: number }>();
  private readonly seen = new Set<string>();
  /** Instances whose launch was abandoned (Auto Scaling terminated them). */
  readonly abandoned = new Set<string>();

  constructor(
    private readonly options: {
      readonly upstream: AutoScalingClient;
      readonly hookName: string;
      readonly heartbeatTimeoutMs: number;
      readonly say: (message: string) => void;
    },
  ) {}

  get hookName(): string {
    return this.options.hookName;
  }

  /** Instances in Pending:Wait. */
  launching(): ReadonlySet<string> {
    return new Set(this.pending.keys());
  }

  isPending(instanceId: string): boolean {
    return this.pending.has(instanceId);
  }

  /** Instances a Describe answer listed: the new ones start their launch in Pending:Wait. */
  observe(instanceIds: readonly string[]): void {
    for (const id of instanceIds) {
      if (this.seen.has(id)) continue;
      this.seen.add(id);
      this.pending.set(id, { deadline: Date.now() + this.options.heartbeatTimeoutMs });
    }
  }

  /** The instance is being terminated (another path ends its launch): its launching action is over. */
  forget(instanceId: string): void {
    this.pending.delete(instanceId);
  }

  owns(params: ActionParams): boolean {
    return params.LifecycleHookName === this.options.hookName;
  }

  /** CompleteLifecycleAction by instance ID: false when there is no active action. */
  async complete(params: ActionParams): Promise<boolean> {
    const id = params.InstanceId ?? '';
    if (!this.pending.has(id)) return false;
    this.pending.delete(id);
    if (params.LifecycleActionResult === 'ABANDON') await this.abandon(id, 'its launch was abandoned');
    return true;
  }

  heartbeat(params: ActionParams): boolean {
    const held = this.pending.get(params.InstanceId ?? '');
    if (!held) return false;
    held.deadline = Date.now() + this.options.heartbeatTimeoutMs;
    return true;
  }

  /** The heartbeat timeout: the default result, ABANDON. */
  async tick(): Promise<void> {
    for (const [id, held] of [...this.pending.entries()]) {
      if (Date.now() < held.deadline) continue;
      this.pending.delete(id);
      await this.abandon(id, 'its launching hook timed out (default result ABANDON)');
    }
  }

  private async abandon(instanceId: string, why: string): Promise<void> {
    this.abandoned.add(instanceId);
    this.options.say(`${instanceId}: ${why}; Auto Scaling terminates it and launches another`);
    await this.options.upstream
      .send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: false }))
      .catch((error: unknown) => this.options.say(`${instanceId} could not be terminated (gone already?): ${(error as Error).message}`));
  }
}
