import { DescribeAutoScalingInstancesCommand, type AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { DescribeInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import type { CallerInstance } from '../domain/issuance.js';

/**
 * The instance a certificate request comes from, as Auto Scaling (its group and lifecycle state) and EC2 (its
 * private address and DNS name) describe it now; undefined when neither knows it.
 */
export async function describeCallerInstance(autoScaling: AutoScalingClient, ec2: EC2Client, instanceId: string): Promise<CallerInstance | undefined> {
  const [scaling, described] = await Promise.all([
    autoScaling.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] })),
    ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-id', Values: [instanceId] }] })),
  ]);
  const membership = scaling.AutoScalingInstances?.find((i) => i.InstanceId === instanceId);
  const instance = described.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId);
  if (!membership && !instance) return undefined;
  return {
    instanceId,
    groupName: membership?.AutoScalingGroupName,
    lifecycleState: membership?.LifecycleState ?? 'NotInAnyGroup',
    privateIp: instance?.PrivateIpAddress,
    privateDnsName: instance?.PrivateDnsName || undefined,
  };
}
