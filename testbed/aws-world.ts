import {
  AutoScalingClient,
  CreateAutoScalingGroupCommand,
  DescribeAutoScalingGroupsCommand,
  SetDesiredCapacityCommand,
  TerminateInstanceInAutoScalingGroupCommand,
} from '@aws-sdk/client-auto-scaling';
import {
  CreateLaunchTemplateCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import type { InstanceIdentity } from '../core/ports.js';
import type { LoopbackNetwork } from './network.js';

export interface SimulatedGroup {
  readonly groupName: string;
  readonly vpcId: string;
  readonly subnetIds: readonly string[];
  /** The group's instances as the emulator describes them; their private IPs are loopback addresses. */
  readonly instances: readonly InstanceIdentity[];
}

const AZS = ['a', 'b', 'c'];

/**
 * The VPC of a claimed loopback network, created once and then reused: every group created in it gets
 * fresh addresses from the same subnets, so a second group never collides with the first one's etcd.
 */
async function networkVpc(ec2: EC2Client, network: LoopbackNetwork, region: string): Promise<{ vpcId: string; subnetIds: string[] }> {
  const existing = await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'cidr-block', Values: [network.vpcCidr] }] }));
  const found = existing.Vpcs?.[0]?.VpcId;
  if (found) {
    const subnets = await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [found] }] }));
    const byCidr = new Map((subnets.Subnets ?? []).map((s) => [s.CidrBlock, s.SubnetId as string]));
    const ids = network.subnetCidrs.map((c) => byCidr.get(c));
    if (ids.every((id) => id !== undefined)) return { vpcId: found, subnetIds: ids };
  }
  const vpc = await ec2.send(new CreateVpcCommand({ CidrBlock: network.vpcCidr }));
  const vpcId = vpc.Vpc?.VpcId as string;
  const subnetIds: string[] = [];
  for (const [i, cidr] of network.subnetCidrs.entries()) {
    const subnet = await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: cidr, AvailabilityZone: `${region}${AZS[i] ?? 'a'}` }));
    subnetIds.push(subnet.Subnet?.SubnetId as string);
  }
  return { vpcId, subnetIds };
}

/**
 * Creates, in the emulator, what the stack creates in AWS: a VPC whose CIDR is the claimed loopback /16,
 * three subnets, a launch template and an Auto Scaling group. The emulator hands the group's instances
 * private IPs from those subnets, i.e. addresses in 127.N.0.0/16 that etcd can listen on, so discovery runs
 * unchanged against them.
 */
export async function createSimulatedGroup(options: {
  network: LoopbackNetwork;
  groupName: string;
  size: number;
  region?: string;
}): Promise<SimulatedGroup> {
  const region = options.region ?? process.env.AWS_REGION ?? 'us-east-1';
  const ec2 = new EC2Client({ region });
  const autoScaling = new AutoScalingClient({ region });
  const { vpcId, subnetIds } = await networkVpc(ec2, options.network, region);
  const templateName = `${options.groupName}-lt`;
  await ec2.send(
    new CreateLaunchTemplateCommand({
      LaunchTemplateName: templateName,
      LaunchTemplateData: { ImageId: 'ami-12c6146b', InstanceType: 't3.small' },
    }),
  );
  await autoScaling.send(
    new CreateAutoScalingGroupCommand({
      AutoScalingGroupName: options.groupName,
      MinSize: 0,
      MaxSize: 7,
      DesiredCapacity: options.size,
      VPCZoneIdentifier: subnetIds.join(','),
      LaunchTemplate: { LaunchTemplateName: templateName },
    }),
  );
  const described = await autoScaling.send(
    new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [options.groupName] }),
  );
  const groupInstances = described.AutoScalingGroups?.[0]?.Instances ?? [];
  // Read independently of core/aws, so tests of that code do not check it against itself.
  const ec2Out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: groupInstances.map((i) => i.InstanceId as string) }));
  const ipOf = new Map(
    (ec2Out.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => [i.InstanceId as string, i.PrivateIpAddress ?? ''])),
  );
  return {
    groupName: options.groupName,
    vpcId,
    subnetIds,
    instances: groupInstances.map((i) => {
      const instanceId = i.InstanceId as string;
      const privateIp = ipOf.get(instanceId) ?? '';
      if (!privateIp.startsWith(`127.${options.network.octet}.`)) {
        throw new Error(`the emulator gave ${instanceId} the address "${privateIp}", outside ${options.network.vpcCidr}`);
      }
      return { instanceId, privateIp, region, availabilityZone: i.AvailabilityZone ?? '' };
    }),
  };
}

/**
 * The group's instances that are in service or launching, with their private IPs, read from the emulator
 * (or through the Auto Scaling shim, which reports instances held by the hook as Terminating:Wait).
 */
export async function describeGroupInstances(groupName: string, autoScalingEndpoint?: string): Promise<InstanceIdentity[]> {
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const autoScaling = new AutoScalingClient({ region, endpoint: autoScalingEndpoint });
  const ec2 = new EC2Client({ region });
  const described = await autoScaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }));
  const members = (described.AutoScalingGroups?.[0]?.Instances ?? []).filter((i) => i.LifecycleState === 'InService' || i.LifecycleState?.startsWith('Pending'));
  if (members.length === 0) return [];
  const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: members.map((i) => i.InstanceId as string) }));
  const ipOf = new Map((out.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => [i.InstanceId as string, i.PrivateIpAddress ?? ''])));
  return members.map((i) => ({
    instanceId: i.InstanceId as string,
    privateIp: ipOf.get(i.InstanceId as string) ?? '',
    region,
    availabilityZone: i.AvailabilityZone ?? '',
  }));
}

/**
 * Terminates an instance the way a failed health check does (the group keeps its desired capacity) and
 * returns the replacement the group launched, if any.
 */
export async function terminateInGroup(groupName: string, instanceId: string, replace: boolean): Promise<InstanceIdentity | undefined> {
  const before = new Set((await describeGroupInstances(groupName)).map((i) => i.instanceId));
  const autoScaling = new AutoScalingClient({ region: process.env.AWS_REGION ?? 'us-east-1' });
  await autoScaling.send(
    new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: !replace }),
  );
  const after = await describeGroupInstances(groupName);
  return after.find((i) => !before.has(i.instanceId));
}

/** Raises the group's desired capacity by `count` (in the emulator, no lifecycle hook) and returns the instances it launched. */
export async function scaleOut(groupName: string, count: number): Promise<InstanceIdentity[]> {
  const before = await describeGroupInstances(groupName);
  const autoScaling = new AutoScalingClient({ region: process.env.AWS_REGION ?? 'us-east-1' });
  await autoScaling.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: groupName, DesiredCapacity: before.length + count }));
  const known = new Set(before.map((i) => i.instanceId));
  return (await describeGroupInstances(groupName)).filter((i) => !known.has(i.instanceId));
}
