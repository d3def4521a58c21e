import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, DescribeLifecycleHooksCommand } from '@aws-sdk/client-auto-scaling';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CloudWatchClient, DescribeAlarmsCommand } from '@aws-sdk/client-cloudwatch';
import {
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeLaunchTemplateVersionsCommand,
  DescribeSecurityGroupsCommand,
  DescribeVpcsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import {
  DescribeListenersCommand,
  DescribeLoadBalancersCommand,
  DescribeTargetGroupsCommand,
  ElasticLoadBalancingV2Client,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { EventBridgeClient, ListRuleNamesByTargetCommand, DescribeRuleCommand } from '@aws-sdk/client-eventbridge';
import {
  GetFunctionConcurrencyCommand,
  GetFunctionConfigurationCommand,
  GetFunctionEventInvokeConfigCommand,
  LambdaClient,
  ListEventSourceMappingsCommand,
} from '@aws-sdk/client-lambda';
import {
  GetBucketEncryptionCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketOwnershipControlsCommand,
  GetBucketPolicyCommand,
  GetBucketVersioningCommand,
  GetPublicAccessBlockCommand,
  HeadBucketCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { DescribeSecretCommand, GetResourcePolicyCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeStack, lastDeployedTemplate, serverless, withDistLock, type DeployedStack } from '../../testbed/deploy.js';
import { startMoto, type Emulator } from '../../testbed/moto.js';
import { ProcessGroup } from '../../testbed/processes.js';
import { REPO_ROOT } from '../../testbed/tools.js';

// `serverless deploy` of this repository, unchanged, against the emulator (its own, so the stack's resources
// are the only ones there), then `serverless remove`. The emulator's CloudFormation gaps are filled in
// testbed/moto_patches.py, one function per gap, never by bending the template. What is checked is what a
// deploy to AWS must create: the group and its launch template, the functions, the queue and its mapping,
// the schedules, the bucket and its settings, the load balancer, the alarms, and every output.
const processes = new ProcessGroup();
const workDir = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-deploy-'));
let moto: Emulator;
const clients = <T>(Client: new (config: object) => T): T =>
  new Client({ endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' }, forcePathStyle: true });

beforeAll(async () => {
  moto = await startMoto(processes, workDir);
});
afterAll(async () => {
  await processes.stopAll(3000);
  rmSync(workDir, { recursive: true, force: true });
});

type Template = { Resources: Record<string, { Type: string }> };
const template = (): Template => JSON.parse(lastDeployedTemplate()) as Template;
const physical = (stack: DeployedStack, logicalId: string): string => {
  const id = stack.resources[logicalId]?.PhysicalResourceId;
  if (!id) throw new Error(`${stack.name} has no resource ${logicalId} (resources: ${Object.keys(stack.resources).join(', ')})`);
  return id;
};

/** What both variants must have: functions, queue, schedules, bucket, group, launch template, outputs. */
async function checkCommon(stack: DeployedStack, stage: string, expected: { size: number; subnets: string[]; vpcId: string; quotaBytes: number; bucketKms?: string }) {
  const groupName = `etcd-aws-${stage}`;
  expect(stack.status).toMatch(/^(CREATE|UPDATE)_COMPLETE$/);

  // Every output resolves to a value of its kind (no logical IDs, no unresolved intrinsics).
  const o = stack.outputs;
  expect(o.AutoScalingGroupName).toBe(groupName);
  expect(o.ClientEndpoint).toMatch(/^https:\/\/[a-z0-9.-]+\.elb\.amazonaws\.com:2379$/i);
  expect(o.BackupBucketName).toBe(physical(stack, 'BackupBucket'));
  expect(o.LifecycleQueueUrl).toMatch(/^https:\/\/sqs\..*\/etcd-aws-/);
  expect(o.LifecycleQueueName).toBe(o.LifecycleQueueUrl?.split('/').pop());
  expect(o.AlarmTopicArn).toMatch(/^arn:aws:sns:us-east-1:\d{12}:/);
  for (const fn of ['NodeAgent', 'Lifecycle', 'Backup', 'Reconcile', 'Issuer']) {
    expect(o[`${fn}LambdaFunctionQualifiedArn`]).toMatch(/^arn:aws:lambda:us-east-1:\d{12}:function:etcd-aws-.+:\d+$/);
  }
  for (const [key, value] of Object.entries(o)) expect(value, `output ${key}`).not.toMatch(/^$|\[object|Fn::|Ref/);

  // The group, its hooks, and the launch template the group uses.
  const group = (await clients(AutoScalingClient).send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }))).AutoScalingGroups?.[0];
  expect(group).toMatchObject({ MinSize: expected.size, MaxSize: expected.size + 1, DesiredCapacity: expected.size, HealthCheckType: 'EC2', HealthCheckGracePeriod: 300 });
  expect(group?.VPCZoneIdentifier?.split(',').sort()).toEqual([...expected.subnets].sort());
  expect(group?.TargetGroupARNs).toEqual([physical(stack, 'ClientTargetGroup')]);
  expect(group?.EnabledMetrics?.map((m) => m.Metric)).toContain('GroupPendingInstances');
  const hooks = (await clients(AutoScalingClient).send(new DescribeLifecycleHooksCommand({ AutoScalingGroupName: groupName }))).LifecycleHooks ?? [];
  const queueArn = (await clients(SQSClient).send(new GetQueueAttributesCommand({ QueueUrl: o.LifecycleQueueUrl, AttributeNames: ['All'] }))).Attributes ?? {};
  expect(hooks.find((h) => h.LifecycleHookName === 'etcd-launch')).toMatchObject({ LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING', HeartbeatTimeout: 600, DefaultResult: 'ABANDON' });
  const terminating = hooks.find((h) => h.LifecycleHookName === 'etcd-terminate');
  expect(terminating).toMatchObject({ LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING', HeartbeatTimeout: 900, DefaultResult: 'CONTINUE', NotificationTargetARN: queueArn.QueueArn });
  expect(terminating?.RoleARN).toMatch(/:role\/etcd-aws-.*LifecycleHookRole/);
  const version = (
    await clients(EC2Client).send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: group?.LaunchTemplate?.LaunchTemplateId, Versions: ['$Latest'] }))
  ).LaunchTemplateVersions?.[0]?.LaunchTemplateData;
  expect(version?.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 });
  expect(version?.InstanceType).toBe('m6i.large');
  const volumes = new Map((version?.BlockDeviceMappings ?? []).map((b) => [b.DeviceName, b.Ebs]));
  expect(volumes.get('/dev/xvda')).toMatchObject({ VolumeType: 'gp3', Encrypted: true });
  expect(volumes.get('/dev/sdf')).toMatchObject({ VolumeType: 'gp3', Encrypted: true, VolumeSize: 50 });
  const userData = Buffer.from(version?.UserData ?? '', 'base64').toString('utf8');
  // dist/ as serverless built it (read under its lock: a package run in another worker rebuilds it).
  const agentSha256 = await withDistLock(() =>
    Promise.resolve(createHash('sha256').update(readFileSync(path.join(REPO_ROOT, 'dist', 'node-agent', 'node-agent.mjs'))).digest('hex')),
  );
  expect(userData).toMatch(/^#cloud-config/);
  expect(userData).toContain(agentSha256);
  expect(userData).toContain(`ETCD_ASG_NAME=${groupName}`);
  expect(userData).toContain(`BACKUP_BUCKET=${o.BackupBucketName}`);
  // etcd's space quota and auto-compaction, the same on every node, and the quota reconcile measures against.
  expect(userData).toContain(`ETCD_QUOTA_BACKEND_BYTES=${expected.quotaBytes}`);
  expect(userData).toContain('ETCD_AUTO_COMPACTION_MODE=periodic');
  expect(userData).toContain('ETCD_AUTO_COMPACTION_RETENTION=1h');

  // The functions, each as serverless.yml describes it, in the stack's subnets.
  const lambda = clients(LambdaClient);
  const fns = {
    nodeAgent: { Handler: 'dist/functions/agent-artifact/index.handler', MemorySize: 256, Timeout: 10 },
    lifecycle: { Handler: 'dist/functions/lifecycle/index.handler', MemorySize: 1024, Timeout: 90 },
    backup: { Handler: 'dist/functions/backup/index.handler', MemorySize: 1024, Timeout: 900 },
    reconcile: { Handler: 'dist/functions/reconcile/index.handler', MemorySize: 1024, Timeout: 120 },
    issuer: { Handler: 'dist/functions/issuer/index.handler', MemorySize: 1024, Timeout: 30 },
  };
  const config: Record<string, Awaited<ReturnType<typeof getConfig>>> = {};
  const getConfig = (name: string) => lambda.send(new GetFunctionConfigurationCommand({ FunctionName: `etcd-aws-${stage}-${name}` }));
  for (const [name, want] of Object.entries(fns)) {
    config[name] = await getConfig(name);
    expect(config[name], name).toMatchObject({ Runtime: 'nodejs22.x', Architectures: ['arm64'], ...want });
    expect(config[name].Environment?.Variables?.ETCD_ASG_NAME, name).toBe(groupName);
    expect([...(config[name].VpcConfig?.SubnetIds ?? [])].sort(), name).toEqual([...expected.subnets].sort());
  }
  expect(config.lifecycle?.Environment?.Variables).toMatchObject({ ETCD_AWS_BACKUP_FUNCTION: `etcd-aws-${stage}-backup`, ETCD_AWS_LIFECYCLE_MAX_RECEIVES: '5' });
  expect(config.backup?.Environment?.Variables).toMatchObject({
    // What bench/main.ts measures the backup with (BACKUP_NODE_OPTIONS).
    NODE_OPTIONS: '--enable-source-maps --max-semi-space-size=1',
    BACKUP_BUCKET: o.BackupBucketName,
    BACKUP_KMS_KEY_ID: expected.bucketKms ?? '',
    BACKUP_KEEP_LAST: '10',
    BACKUP_KEEP_HOURLY_HOURS: '24',
    BACKUP_KEEP_DAILY_DAYS: '7',
  });
  expect(config.reconcile?.Environment?.Variables).toMatchObject({ BACKUP_BUCKET: o.BackupBucketName, ETCD_QUOTA_BACKEND_BYTES: String(expected.quotaBytes) });
  // The issuer: the CA secret (holding "no CAs yet", encrypted with the stack's own key, readable by the issuer
  // only), the node role whose instances it serves, and the load balancer's name for client-port certificates.
  const issuerRoleArn = config.issuer?.Role ?? '';
  expect(issuerRoleArn).toMatch(new RegExp(`^arn:aws:iam::\\d{12}:role/${physical(stack, 'IssuerRole')}$`));
  const issuerEnv = config.issuer?.Environment?.Variables ?? {};
  expect(issuerEnv).toMatchObject({ ETCD_AWS_CA_SECRET: o.CaSecretArn, ETCD_AWS_NODE_ROLE: physical(stack, 'NodeRole'), ETCD_AWS_CERT_LIFETIME_HOURS: '168' });
  const secrets = clients(SecretsManagerClient);
  const secret = await secrets.send(new DescribeSecretCommand({ SecretId: o.CaSecretArn }));
  expect(secret.KmsKeyId).toBe(physical(stack, 'CaKey'));
  // (Read as the emulator's test user: on AWS the secret policy denies this read to all but the issuer; the
  // emulator does not evaluate resource policies, so the template test checks that policy.)
  expect((await secrets.send(new GetSecretValueCommand({ SecretId: o.CaSecretArn }))).SecretString).toBe('{}');
  const secretPolicy = JSON.parse((await secrets.send(new GetResourcePolicyCommand({ SecretId: o.CaSecretArn }))).ResourcePolicy ?? '{}') as { Statement: unknown[] };
  expect(secretPolicy.Statement).toEqual([expect.objectContaining({ Effect: 'Deny', Condition: { ArnNotEquals: { 'aws:PrincipalArn': issuerRoleArn } } })]);

  // No reserved concurrency: new accounts cannot reserve any (their quota is 10, the unreserved minimum).
  expect((await lambda.send(new GetFunctionConcurrencyCommand({ FunctionName: `etcd-aws-${stage}-backup` }))).ReservedConcurrentExecutions).toBeUndefined();
  const asyncFailures = (await clients(SQSClient).send(new GetQueueAttributesCommand({ QueueUrl: o.AsyncFailureQueueUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
  for (const name of ['backup', 'reconcile']) {
    const invokeConfig = await lambda.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: `etcd-aws-${stage}-${name}` }));
    expect(invokeConfig.DestinationConfig?.OnFailure?.Destination, name).toBe(asyncFailures);
  }

  // The queue, its dead-letter queue, and the mapping that is the lifecycle function's one trigger.
  expect(queueArn).toMatchObject({ VisibilityTimeout: '540' });
  expect(JSON.parse(queueArn.RedrivePolicy ?? '{}')).toMatchObject({ maxReceiveCount: 5 });
  const mappings = (await lambda.send(new ListEventSourceMappingsCommand({ EventSourceArn: queueArn.QueueArn }))).EventSourceMappings ?? [];
  expect(mappings).toHaveLength(1);
  expect(mappings[0]).toMatchObject({ FunctionArn: config.lifecycle?.FunctionArn, BatchSize: 1, FunctionResponseTypes: ['ReportBatchItemFailures'], ScalingConfig: { MaximumConcurrency: 2 } });

  // The schedules: backup and reconcile every 5 minutes.
  const events = clients(EventBridgeClient);
  for (const name of ['backup', 'reconcile']) {
    const rules = (await events.send(new ListRuleNamesByTargetCommand({ TargetArn: config[name]?.FunctionArn }))).RuleNames ?? [];
    expect(rules, name).toHaveLength(1);
    expect((await events.send(new DescribeRuleCommand({ Name: rules[0] }))).ScheduleExpression, name).toBe('rate(5 minutes)');
  }

  // The bucket and the settings the emulator would have dropped.
  const s3 = clients(S3Client);
  const Bucket = o.BackupBucketName;
  expect((await s3.send(new GetBucketVersioningCommand({ Bucket }))).Status).toBe('Enabled');
  expect((await s3.send(new GetPublicAccessBlockCommand({ Bucket }))).PublicAccessBlockConfiguration).toEqual({
    BlockPublicAcls: true,
    IgnorePublicAcls: true,
    BlockPublicPolicy: true,
    RestrictPublicBuckets: true,
  });
  expect((await s3.send(new GetBucketOwnershipControlsCommand({ Bucket }))).OwnershipControls?.Rules).toEqual([{ ObjectOwnership: 'BucketOwnerEnforced' }]);
  const lifecycleRules = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket }))).Rules ?? [];
  expect(lifecycleRules.map((r) => r.ID).sort()).toEqual(['abort-incomplete-multipart-uploads', 'expire-noncurrent-versions']);
  const policy = JSON.parse((await s3.send(new GetBucketPolicyCommand({ Bucket }))).Policy ?? '{}') as { Statement: Array<{ Sid: string; Effect: string }> };
  expect(policy.Statement).toContainEqual(expect.objectContaining({ Sid: 'DenyInsecureTransport', Effect: 'Deny' }));
  const encryption = (await s3.send(new GetBucketEncryptionCommand({ Bucket }))).ServerSideEncryptionConfiguration?.Rules?.[0]?.ApplyServerSideEncryptionByDefault;
  expect(encryption).toEqual(expected.bucketKms ? { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: expected.bucketKms } : { SSEAlgorithm: 'AES256' });

  // The internal network load balancer: TCP on 2379, to the group's target group.
  const elb = clients(ElasticLoadBalancingV2Client);
  const lb = (await elb.send(new DescribeLoadBalancersCommand({ LoadBalancerArns: [physical(stack, 'ClientLoadBalancer')] }))).LoadBalancers?.[0];
  expect(lb).toMatchObject({ Type: 'network', Scheme: 'internal', VpcId: expected.vpcId });
  expect(o.ClientEndpoint).toBe(`https://${lb?.DNSName}:2379`);
  const listeners = (await elb.send(new DescribeListenersCommand({ LoadBalancerArn: lb?.LoadBalancerArn }))).Listeners ?? [];
  expect(listeners.map((l) => [l.Protocol, l.Port])).toEqual([['TCP', 2379]]);
  const targets = (await elb.send(new DescribeTargetGroupsCommand({ TargetGroupArns: group?.TargetGroupARNs }))).TargetGroups?.[0];
  expect(targets).toMatchObject({ Protocol: 'TCP', Port: 2379, VpcId: expected.vpcId, HealthCheckPort: '2381', HealthCheckPath: '/health' });

  // Every alarm of the template exists and notifies the alarm topic.
  const alarmIds = Object.entries(template().Resources).filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm').map(([id]) => id);
  expect(alarmIds.length).toBeGreaterThan(5);
  const alarms = (await clients(CloudWatchClient).send(new DescribeAlarmsCommand({ AlarmNames: alarmIds.map((id) => physical(stack, id)) }))).MetricAlarms ?? [];
  expect(alarms).toHaveLength(alarmIds.length);
  for (const alarm of alarms) expect(alarm.AlarmActions, alarm.AlarmName).toEqual([o.AlarmTopicArn]);
}

/** `serverless remove`: the stack and what it created are gone, except the backup bucket (retained). */
async function removeAndCheck(stage: string, stack: DeployedStack, vpcId: string, vpcIsTheStacks: boolean) {
  await serverless(moto.endpoint, 'remove', stage);
  const after = await clients(CloudFormationClient)
    .send(new DescribeStacksCommand({ StackName: stack.name }))
    .then((r) => r.Stacks?.[0]?.StackStatus, (error: unknown) => String(error));
  expect(after).toMatch(/DELETE_COMPLETE|does not exist/);
  const groups = (await clients(AutoScalingClient).send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [`etcd-aws-${stage}`] }))).AutoScalingGroups;
  expect(groups).toEqual([]);
  await expect(clients(LambdaClient).send(new GetFunctionConfigurationCommand({ FunctionName: `etcd-aws-${stage}-backup` }))).rejects.toThrow(/not found/i);
  await expect(clients(S3Client).send(new HeadBucketCommand({ Bucket: stack.outputs.BackupBucketName }))).resolves.toBeDefined();
  const vpcs = (await clients(EC2Client).send(new DescribeVpcsCommand({}))).Vpcs?.map((v) => v.VpcId) ?? [];
  if (vpcIsTheStacks) expect(vpcs).not.toContain(vpcId);
  else expect(vpcs).toContain(vpcId);
}

describe('serverless deploy to the emulator, then serverless remove', () => {
  it('creates the whole stack with its own VPC, and removes all of it but the backup bucket', async () => {
    const stage = 'e2e';
    await serverless(moto.endpoint, 'deploy', stage);
    const stack = await describeStack(clients(CloudFormationClient), stage);
    const vpcId = physical(stack, 'Vpc');
    const subnets = ['PrivateSubnetA', 'PrivateSubnetB', 'PrivateSubnetC'].map((id) => physical(stack, id));
    await checkCommon(stack, stage, { size: 3, subnets, vpcId, quotaBytes: 2 * 1024 ** 3 });
    await removeAndCheck(stage, stack, vpcId, true);
  });

  it('deploys into an existing VPC, with the clients security group and a KMS key for the backups', async () => {
    const ec2 = clients(EC2Client);
    const vpcId = (await ec2.send(new CreateVpcCommand({ CidrBlock: '10.42.0.0/16' }))).Vpc?.VpcId ?? '';
    const subnets: string[] = [];
    for (const [i, zone] of ['a', 'b', 'c'].entries()) {
      const subnet = await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: `10.42.${i}.0/24`, AvailabilityZone: `us-east-1${zone}` }));
      subnets.push(subnet.Subnet?.SubnetId ?? '');
    }
    const clientGroup = (await ec2.send(new CreateSecurityGroupCommand({ GroupName: 'etcd-clients', Description: 'etcd clients', VpcId: vpcId }))).GroupId ?? '';
    // The stack only names the key (bucket encryption, the functions' environment); the emulator does not look it up.
    const keyArn = 'arn:aws:kms:us-east-1:123456789012:key/0b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3';
    const stage = 'e2evpc';
    await serverless(moto.endpoint, 'deploy', stage, {
      vpcId,
      subnetIds: subnets.join(','),
      clientSecurityGroupId: clientGroup,
      backupKmsKeyArn: keyArn,
      clusterSize: '5',
      quotaBackendBytes: String(4 * 1024 ** 3),
    });
    const stack = await describeStack(clients(CloudFormationClient), stage);
    expect(Object.values(stack.resources).map((r) => r.ResourceType)).not.toContain('AWS::EC2::VPC');
    expect(Object.values(stack.resources).map((r) => r.ResourceType)).not.toContain('AWS::EC2::NatGateway');
    await checkCommon(stack, stage, { size: 5, subnets, vpcId, quotaBytes: 4 * 1024 ** 3, bucketKms: keyArn });
    // Clients reach the load balancer on 2379 from their own security group, and from nowhere else.
    const lbGroup = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [physical(stack, 'LoadBalancerSecurityGroup')] }))).SecurityGroups?.[0];
    expect(lbGroup?.IpPermissions?.map((p) => [p.FromPort, p.ToPort, p.UserIdGroupPairs?.map((g) => g.GroupId)])).toEqual([[2379, 2379, [clientGroup]]]);
    await removeAndCheck(stage, stack, vpcId, false);
  });
});
