import {
  AutoScalingClient,
  DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
} from '@aws-sdk/client-auto-scaling';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { DiscoveryError } from '../../core/errors.js';

const asg = mockClient(AutoScalingClient);
const ec2 = mockClient(EC2Client);
const inventory = () => new AwsInstanceInventory(new AutoScalingClient({ region: 'us-east-1' }), new EC2Client({ region: 'us-east-1' }));

beforeEach(() => {
  asg.reset();
  ec2.reset();
});

describe('AwsInstanceInventory', () => {
  it('follows every DescribeInstances page and joins IPs to the group instances', async () => {
    asg.on(DescribeAutoScalingGroupsCommand, { AutoScalingGroupNames: ['etcd'] }).resolves({
      AutoScalingGroups: [
        {
          AutoScalingGroupName: 'etcd',
          Instances: [
            { InstanceId: 'i-1', LifecycleState: 'InService', HealthStatus: 'Healthy', AvailabilityZone: 'us-east-1a' },
            { InstanceId: 'i-2', LifecycleState: 'Terminating:Wait', HealthStatus: 'Healthy', AvailabilityZone: 'us-east-1b' },
            { InstanceId: 'i-3', LifecycleState: 'Pending', HealthStatus: 'Healthy', AvailabilityZone: 'us-east-1c' },
          ],
        },
      ] as never,
    });
    ec2
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [{ Instances: [{ InstanceId: 'i-1', PrivateIpAddress: '10.0.1.5' }] }], NextToken: 'p2' })
      .resolvesOnce({ Reservations: [{ Instances: [{ InstanceId: 'i-2', PrivateIpAddress: '10.0.2.5' }] }] });

    const instances = await inventory().instancesOf('etcd');

    expect(instances).toEqual([
      { instanceId: 'i-1', lifecycleState: 'InService', healthStatus: 'Healthy', availabilityZone: 'us-east-1a', privateIp: '10.0.1.5' },
      { instanceId: 'i-2', lifecycleState: 'Terminating:Wait', healthStatus: 'Healthy', availabilityZone: 'us-east-1b', privateIp: '10.0.2.5' },
      { instanceId: 'i-3', lifecycleState: 'Pending', healthStatus: 'Healthy', availabilityZone: 'us-east-1c', privateIp: undefined },
    ]);
    const calls = ec2.commandCalls(DescribeInstancesCommand);
    expect(calls).toHaveLength(2);
    expect(calls[1]?.args[0].input).toMatchObject({ NextToken: 'p2', Filters: [{ Name: 'instance-id', Values: ['i-1', 'i-2', 'i-3'] }] });
  });

  it('says which group does not exist', async () => {
    asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [] });
    await expect(inventory().instancesOf('nope')).rejects.toThrow(
      new DiscoveryError('Auto Scaling group nope does not exist in this account and region'),
    );
  });

  it('finds the group of an instance, or none', async () => {
    asg
      .on(DescribeAutoScalingInstancesCommand, { InstanceIds: ['i-1'] })
      .resolves({ AutoScalingInstances: [{ InstanceId: 'i-1', AutoScalingGroupName: 'etcd' } as never] })
      .on(DescribeAutoScalingInstancesCommand, { InstanceIds: ['i-9'] })
      .resolves({ AutoScalingInstances: [] });
    await expect(inventory().groupOf('i-1')).resolves.toBe('etcd');
    await expect(inventory().groupOf('i-9')).resolves.toBeUndefined();
  });

  it('reports EC2 state and the time of the last transition for instances it still knows', async () => {
    ec2.on(DescribeInstancesCommand).resolves({
      Reservations: [
        {
          Instances: [
            { InstanceId: 'i-1', State: { Name: 'terminated' }, StateTransitionReason: 'User initiated (2026-11-26 11:00:00 GMT)' },
            { InstanceId: 'i-2', State: { Name: 'running' }, StateTransitionReason: '' },
          ],
        },
      ],
    });
    const facts = await inventory().instanceFacts(['i-1', 'i-2', 'not-an-instance-id']);
    expect([...facts.entries()]).toEqual([
      ['i-1', { state: 'terminated', since: Date.parse('2026-11-26T11:00:00Z') }],
      ['i-2', { state: 'running', since: undefined }],
    ]);
    expect(ec2.commandCalls(DescribeInstancesCommand)[0]?.args[0].input).toMatchObject({ Filters: [{ Name: 'instance-id', Values: ['i-1', 'i-2'] }] });
  });
});
