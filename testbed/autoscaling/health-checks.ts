import { AutoScalingClient, DescribeAutoScalingGroupsCommand, SetDesiredCapacityCommand } from '@aws-sdk/client-auto-scaling';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import type { TerminationHook } from './termination-hook.js';

export interface HealthCheckOptions {
  /**
   * `EC2`: an instance is unhealthy only when something says so (SetInstanceHealth; EC2's status checks,
   * which never fail here). `ELB`: also when the load balancer's check, GET /health on etcd's metrics port
   * (2381), fails `unhealthyThreshold` times in a row, `intervalMs` apart, once `graceMs` passed since its launch.
   */
  readonly type: 'EC2' | 'ELB';
  readonly graceMs: number;
  readonly intervalMs: number;
  readonly unhealthyThreshold: number;
}

/**
 * Auto Scaling's health checks and their replacement of unhealthy instances, as AWS does it by default: the
 * unhealthy instance is terminated (through the terminating hook: it waits in Terminating:Wait, still running)
 * while, at the same time, a replacement is launched. Nothing is replaced while the HealthCheck or
 * ReplaceUnhealthy process is suspended (a rolling update suspends them).
 */
export class HealthChecks {
  private readonly unhealthy = new Set<string>();
  private readonly replacing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private lastCheck = 0;

  constructor(
    private readonly options: HealthCheckOptions & {
      readonly upstream: AutoScalingClient;
      readonly ec2: EC2Client;
      readonly termination: TerminationHook | undefined;
      readonly suspended: ReadonlySet<string>;
      readonly isLaunching: (instanceId: string) => boolean;
      readonly say: (message: string) => void;
    },
  ) {}

  unhealthyInstances(): ReadonlySet<string> {
    return new Set(this.unhealthy);
  }

  isUnhealthy(instanceId: string): boolean {
    return this.unhealthy.has(instanceId);
  }

  /** SetInstanceHealth; with ShouldRespectGracePeriod (the default), an instance inside its grace period is left alone. */
  async setHealth(instanceId: string, status: string, respectGrace: boolean): Promise<void> {
    if (status !== 'Unhealthy') {
      this.unhealthy.delete(instanceId);
      return;
    }
    if (respectGrace && (await this.ageMs(instanceId)) < this.options.graceMs) return;
    if (!this.unhealthy.has(instanceId)) this.options.say(`${instanceId} is marked unhealthy (SetInstanceHealth)`);
    this.unhealthy.add(instanceId);
  }

  async tick(groupName: string): Promise<void> {
    if (this.options.type === 'ELB' && Date.now() - this.lastCheck >= this.options.intervalMs) {
      this.lastCheck = Date.now();
      await this.checkLoadBalancerTargets(groupName);
    }
    if (this.options.suspended.has('HealthCheck') || this.options.suspended.has('ReplaceUnhealthy')) return;
    if (this.unhealthy.size === 0) return;
    // Only an instance still in service is replaced: one that is already terminating (a scale-in, a rolling
    // update, an earlier replacement) or gone is left to that, as Auto Scaling does.
    const inGroup = (await this.options.upstream.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }))).AutoScalingGroups?.[0]?.Instances ?? [];
    const inService = new Set(inGroup.filter((i) => i.LifecycleState === 'InService').map((i) => i.InstanceId ?? ''));
    for (const id of this.unhealthy) {
      if (this.replacing.has(id) || !this.options.termination) continue;
      if (!inService.has(id) || this.options.termination.isWaiting(id)) {
        if (!inGroup.some((i) => i.InstanceId === id)) this.unhealthy.delete(id);
        continue;
      }
      this.replacing.add(id);
      this.options.say(`Auto Scaling replaces unhealthy ${id}: terminating it (the hook holds it) and launching a replacement at once`);
      await this.options.termination.begin(groupName, id, true);
      const group = (await this.options.upstream.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }))).AutoScalingGroups?.[0];
      await this.options.upstream.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: groupName, DesiredCapacity: (group?.DesiredCapacity ?? 0) + 1 }));
    }
  }

  /** The load balancer's target health check: GET /health on each in-service instance past its grace period. */
  private async checkLoadBalancerTargets(groupName: string): Promise<void> {
    const group = (await this.options.upstream.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }))).AutoScalingGroups?.[0];
    const ids = (group?.Instances ?? [])
      .map((i) => i.InstanceId ?? '')
      .filter((id) => id !== '' && !this.options.isLaunching(id) && !(this.options.termination?.isWaiting(id) ?? false));
    if (ids.length === 0) return;
    const described = await this.options.ec2.send(new DescribeInstancesCommand({ InstanceIds: ids }));
    for (const instance of (described.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
      const id = instance.InstanceId ?? '';
      if (!instance.PrivateIpAddress || Date.now() - (instance.LaunchTime?.getTime() ?? 0) < this.options.graceMs) continue;
      const healthy = await fetch(`http://${instance.PrivateIpAddress}:2381/health`, { signal: AbortSignal.timeout(2000) })
        .then(async (r) => ((await r.json()) as { health?: string }).health === 'true')
        .catch(() => false);
      const failed = healthy ? 0 : (this.failures.get(id) ?? 0) + 1;
      this.failures.set(id, failed);
      if (failed >= this.options.unhealthyThreshold && !this.unhealthy.has(id)) {
        this.options.say(`${id} failed the load balancer's health check ${failed} times in a row: unhealthy`);
        this.unhealthy.add(id);
      }
    }
  }

  private async ageMs(instanceId: string): Promise<number> {
    const out = await this.options.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
    const launched = out.Reservations?.[0]?.Instances?.[0]?.LaunchTime?.getTime();
    return launched === undefined ? Number.POSITIVE_INFINITY : Date.now() - launched;
  }
}
