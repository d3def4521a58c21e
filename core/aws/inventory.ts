import {
  AutoScalingClient,
  DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
} from '@aws-sdk/client-auto-scaling';
import { EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import type { GroupInstance } from '../domain/instances.js';
import { parseTransitionTime, type InstanceFact } from '../domain/reconcile.js';
import { DiscoveryError } from '../errors.js';
import type { InstanceInventory } from '../ports.js';

/** The group and its instances through the Auto Scaling and EC2 APIs. */
export class AwsInstanceInventory implements InstanceInventory {
  constructor(
    private readonly autoScaling: AutoScalingClient,
    private readonly ec2: EC2Client,
  ) {}

  async groupOf(instanceId: string): Promise<string | undefined> {
    const out = await this.autoScaling.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] }));
    return out.AutoScalingInstances?.find((i) => i.InstanceId === instanceId)?.AutoScalingGroupName;
  }

  async instancesOf(groupName: string): Promise<GroupInstance[]> {
    const out = await this.autoScaling.send(
      new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }),
    );
    const group = out.AutoScalingGroups?.find((g) => g.AutoScalingGroupName === groupName);
    if (!group) {
      throw new DiscoveryError(`Auto Scaling group ${groupName} does not exist in this account and region`);
    }
    const members = group.Instances ?? [];
    if (members.length === 0) return [];
    const described = await this.describe(members.map((i) => i.InstanceId ?? '').filter((id) => id !== ''));
    return members
      .filter((i) => i.InstanceId !== undefined)
      .map((i) => ({
        instanceId: i.InstanceId as string,
        lifecycleState: i.LifecycleState ?? 'Unknown',
        healthStatus: i.HealthStatus ?? 'Unknown',
        availabilityZone: i.AvailabilityZone ?? '',
        privateIp: described.get(i.InstanceId as string)?.privateIp,
        launchedAt: described.get(i.InstanceId as string)?.launchedAt,
      }));
  }

  async instanceFacts(instanceIds: readonly string[]): Promise<Map<string, InstanceFact>> {
    const facts = new Map<string, InstanceFact>();
    const ids = instanceIds.filter((id) => /^i-[0-9a-f]+$/.test(id));
    if (ids.length === 0) return facts;
    const pages = paginateDescribeInstances({ client: this.ec2, pageSize: 100 }, { Filters: [{ Name: 'instance-id', Values: ids }] });
    for await (const page of pages) {
      for (const reservation of page.Reservations ?? []) {
        for (const instance of reservation.Instances ?? []) {
          if (!instance.InstanceId) continue;
          facts.set(instance.InstanceId, {
            state: instance.State?.Name ?? 'unknown',
            since: parseTransitionTime(instance.StateTransitionReason),
          });
        }
      }
    }
    return facts;
  }

  /** Private IPv4 and launch time of each instance that EC2 still describes; DescribeInstances is paginated. */
  private async describe(instanceIds: string[]): Promise<Map<string, { privateIp: string | undefined; launchedAt: number | undefined }>> {
    const out = new Map<string, { privateIp: string | undefined; launchedAt: number | undefined }>();
    const pages = paginateDescribeInstances({ client: this.ec2, pageSize: 100 }, {
      Filters: [{ Name: 'instance-id', Values: instanceIds }],
    });
    for await (const page of pages) {
      for (const reservation of page.Reservations ?? []) {
        for (const instance of reservation.Instances ?? []) {
          if (!instance.InstanceId) continue;
          out.set(instance.InstanceId, { privateIp: instance.PrivateIpAddress, launchedAt: instance.LaunchTime?.getTime() });
        }
      }
    }
    return out;
  }
}
