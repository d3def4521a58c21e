import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { COMPACTION_RETENTION_PATTERN, loadConfig, MAX_QUOTA_BYTES } from '../../core/config.js';
import { etcdBuilds, resolveEtcd } from '../../scripts/etcd-build.mjs';
import { withDistLock } from '../../testbed/deploy.js';
import { REPO_ROOT } from '../../testbed/tools.js';

// `serverless package` exactly as an air-gapped CI runs it (no credentials, no profile, no emulator), then
// cfn-lint and assertions on the template that `serverless deploy` would create.
const run = promisify(execFile);
const out = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-package-'));

type Resource = { Type: string; Properties: Record<string, unknown>; Condition?: string };
let template: {
  Resources: Record<string, Resource>;
  Outputs: Record<string, unknown>;
  Parameters: Record<string, { Type: string; Default?: unknown; AllowedValues?: unknown; AllowedPattern?: string; MinValue?: number; MaxValue?: number; ConstraintDescription?: string }>;
};
const byType = (type: string) => Object.entries(template.Resources).filter(([, r]) => r.Type === type);
const resource = (id: string): Resource => {
  const r = template.Resources[id];
  if (!r) throw new Error(`no resource ${id} in the template`);
  return r;
};
type Statement = { Effect: string; Action: string | string[]; Resource: unknown };
/** A role's statements: its inline policies and every AWS::IAM::Policy attached to it. */
function statements(roleId: string): Statement[] {
  const attached = byType('AWS::IAM::Policy')
    .filter(([, p]) => (p.Properties.Roles as unknown[]).some((r) => JSON.stringify(r) === JSON.stringify({ Ref: roleId })))
    .map(([, p]) => p.Properties as { PolicyDocument: { Statement: unknown[] } });
  const policies = [...((resource(roleId).Properties.Policies ?? []) as Array<{ PolicyDocument: { Statement: unknown[] } }>), ...attached];
  return policies.flatMap((p) =>
    p.PolicyDocument.Statement.flatMap((s) => {
      // A conditional statement (KMS): take the statement branch of the Fn::If.
      const branch = (s as { 'Fn::If'?: unknown[] })['Fn::If'];
      return (branch ? [branch[1]] : [s]) as Statement[];
    }),
  );
}
const actions = (roleId: string) => new Set(statements(roleId).flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])));

beforeAll(async () => {
  await withDistLock(() =>
    run(path.join(REPO_ROOT, 'node_modules', '.bin', 'serverless'), ['package', '--package', out], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, HOME: out, SLS_TELEMETRY_DISABLED: '1', SLS_NOTIFICATIONS_MODE: 'off', CI: 'true' },
      timeout: 170_000,
    }),
  );
  template = JSON.parse(readFileSync(path.join(out, 'cloudformation-template-update-stack.json'), 'utf8')) as typeof template;
});
afterAll(() => rmSync(out, { recursive: true, force: true }));

async function cfnLint(templateFile: string): Promise<{ code: number; output: string }> {
  return run(path.join(REPO_ROOT, '.venv', 'bin', 'cfn-lint'), [templateFile], { cwd: REPO_ROOT }).then(
    (r) => ({ code: 0, output: r.stdout + r.stderr }),
    (error: unknown) => {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, output: e.stdout + e.stderr };
    },
  );
}

/** The options of the README's `npx serverless deploy` command (its Deploy section), as a user copies them. */
function readmeDeployOptions(): string[] {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const command = /^npx serverless deploy ((?:.*\\\n)*.*)$/m.exec(readme)?.[1];
  if (!command) throw new Error('README.md has no `npx serverless deploy` command line');
  return command.replace(/\\\n/g, ' ').trim().split(/\s+/).map((arg) => arg.replace(/^(--param=)"(.*)"$/, '$1$2'));
}

describe('serverless package (offline) and the stack it describes', () => {
  it('passes cfn-lint with zero errors (kept warnings are listed and explained in .cfnlintrc.yaml)', async () => {
    const lint = await cfnLint(path.join(out, 'cloudformation-template-update-stack.json'));
    expect(lint.output).toBe('');
    expect(lint.code).toBe(0);
  });

  it("packages the README's own deploy command into a template that passes cfn-lint", async () => {
    const options = readmeDeployOptions();
    expect(options).toEqual(expect.arrayContaining(['--stage', '--region', expect.stringMatching(/^--param=clusterSize=\d$/)]));
    const dir = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-package-readme-'));
    try {
      await withDistLock(() =>
        run(path.join(REPO_ROOT, 'node_modules', '.bin', 'serverless'), ['package', '--package', dir, ...options], {
          cwd: REPO_ROOT,
          env: { PATH: process.env.PATH, HOME: dir, SLS_TELEMETRY_DISABLED: '1', SLS_NOTIFICATIONS_MODE: 'off', CI: 'true' },
          timeout: 170_000,
        }),
      );
      const file = path.join(dir, 'cloudformation-template-update-stack.json');
      const packaged = JSON.parse(readFileSync(file, 'utf8')) as typeof template;
      expect(packaged.Parameters.ClusterSize?.Default).toBe(/clusterSize=(\d)/.exec(options.join(' '))?.[1]);
      const lint = await cfnLint(file);
      expect(lint.output).toBe('');
      expect(lint.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('packages each function with its own bundle only, on nodejs22.x', async () => {
    for (const [name, id] of [['lifecycle', 'LifecycleLambdaFunction'], ['backup', 'BackupLambdaFunction'], ['reconcile', 'ReconcileLambdaFunction'], ['issuer', 'IssuerLambdaFunction']] as const) {
      expect(resource(id).Properties).toMatchObject({ Runtime: 'nodejs22.x', Handler: `dist/functions/${name}/index.handler` });
      const { stdout } = await run(path.join(REPO_ROOT, '.venv', 'bin', 'python'), ['-m', 'zipfile', '-l', path.join(out, `${name}.zip`)]);
      expect(stdout).toContain(`dist/functions/${name}/index.mjs`);
      expect(stdout).not.toContain('node_modules/');
      expect(stdout).not.toContain('node-agent.mjs');
    }
    const { stdout } = await run(path.join(REPO_ROOT, '.venv', 'bin', 'python'), ['-m', 'zipfile', '-l', path.join(out, 'nodeAgent.zip')]);
    expect(stdout).toContain('dist/node-agent/node-agent.mjs');
    // Backups are single-flight through an S3 lock, not reserved concurrency: a new account's quota of 10
    // leaves none to reserve, and such a stack fails to deploy.
    expect(resource('BackupLambdaFunction').Properties).not.toHaveProperty('ReservedConcurrentExecutions');
  });

  it('grants no IAM action "*", and each role exactly the calls its code makes', () => {
    for (const [id] of byType('AWS::IAM::Role')) {
      for (const s of statements(id)) {
        for (const a of Array.isArray(s.Action) ? s.Action : [s.Action]) expect(a).not.toMatch(/^\*$|:\*$/);
      }
    }
    const describe = ['autoscaling:DescribeAutoScalingGroups', 'ec2:DescribeInstances'];
    const backupObjects = ['s3:ListBucket', 's3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload', 'kms:GenerateDataKey', 'kms:Decrypt'];
    const hook = ['autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat'];
    expect(actions('ReconcileRole')).toEqual(new Set([...describe, 'autoscaling:SetInstanceHealth', 's3:ListBucket', 's3:GetObject', 'sqs:SendMessage', 'kms:Decrypt', 'lambda:InvokeFunction']));
    expect(actions('BackupRole')).toEqual(new Set([...describe, ...backupObjects, ...hook, 'sqs:SendMessage', 'lambda:InvokeFunction']));
    expect(actions('LifecycleRole')).toEqual(
      new Set([...describe, ...hook, 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ChangeMessageVisibility', 'lambda:InvokeFunction']),
    );
    expect(actions('NodeRole')).toEqual(
      new Set([
        'autoscaling:DescribeAutoScalingInstances',
        ...describe,
        ...hook,
        'autoscaling:SetInstanceHealth',
        'cloudformation:SignalResource',
        's3:ListBucket',
        's3:GetObject',
        's3:PutObject',
        'lambda:GetFunction',
        'lambda:InvokeFunction',
        'kms:GenerateDataKey',
        'kms:Decrypt',
      ]),
    );
    expect(actions('IssuerRole')).toEqual(
      new Set(['autoscaling:DescribeAutoScalingInstances', 'ec2:DescribeInstances', 'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'kms:Decrypt', 'kms:GenerateDataKey']),
    );
    // The nodes may invoke the issuer only; the functions the issuer (their root certificate), lifecycle the backup too.
    expect(statements('NodeRole').find((st) => st.Action === 'lambda:InvokeFunction')?.Resource).toEqual({ 'Fn::GetAtt': ['IssuerLambdaFunction', 'Arn'] });
    for (const id of ['BackupRole', 'ReconcileRole', 'LifecycleRole']) {
      expect(statements(id).filter((st) => st.Action === 'lambda:InvokeFunction').map((st) => st.Resource)).toContainEqual({ 'Fn::GetAtt': ['IssuerLambdaFunction', 'Arn'] });
    }
    expect(resource('IssuerLambdaFunction').Properties.Environment).toMatchObject({
      Variables: { ETCD_AWS_NODE_ROLE: { Ref: 'NodeRole' }, ETCD_AWS_CONTROL_ROLES: { 'Fn::Join': [',', [{ Ref: 'LifecycleRole' }, { Ref: 'BackupRole' }, { Ref: 'ReconcileRole' }]] } },
    });
    // Lifecycle actions and health only on the group; the stack's signal only on this stack.
    for (const id of ['LifecycleRole', 'BackupRole', 'ReconcileRole', 'NodeRole']) {
      for (const s of statements(id).filter((x) => JSON.stringify(x.Action).includes('autoscaling:') && !JSON.stringify(x.Action).includes('Describe'))) {
        expect(JSON.stringify(s.Resource)).toContain('autoScalingGroupName/etcd-aws-dev');
      }
    }
    expect(JSON.stringify(statements('NodeRole').find((s) => s.Action === 'cloudformation:SignalResource')?.Resource)).toContain('stack/${AWS::StackName}/*');
    // Only Describe* (which has no resource-level permissions) may use "*" as resource.
    for (const id of ['LifecycleRole', 'BackupRole', 'ReconcileRole', 'NodeRole', 'IssuerRole']) {
      for (const s of statements(id).filter((x) => x.Resource === '*')) {
        for (const a of Array.isArray(s.Action) ? s.Action : [s.Action]) expect(a).toMatch(/:Describe/);
      }
    }
    const lifecycleHook = statements('LifecycleRole').find((s) => JSON.stringify(s.Action).includes('CompleteLifecycleAction'));
    expect(JSON.stringify(lifecycleHook?.Resource)).toContain('autoScalingGroupName/etcd-aws-dev');
  });

  it('lets only the issuer read or change the CA secret: its role alone is granted it, the secret denies everyone else, the key works only through Secrets Manager', () => {
    // Does an IAM action pattern ("kms:Get*", "secretsmanager:*", "*") cover this action?
    const covers = (pattern: string, action: string) => new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i').test(action);
    const grants = (st: Statement, action: string) => st.Effect === 'Allow' && (Array.isArray(st.Action) ? st.Action : [st.Action]).some((a) => covers(a, action));
    for (const [roleId] of byType('AWS::IAM::Role')) {
      const reading = statements(roleId).filter((st) => grants(st, 'secretsmanager:GetSecretValue'));
      if (roleId === 'IssuerRole') expect(reading.map((st) => st.Resource)).toEqual([{ Ref: 'CaSecret' }]);
      else expect(reading).toEqual([]);
      const decrypting = statements(roleId).filter((st) => grants(st, 'kms:Decrypt') && JSON.stringify(st.Resource).includes('CaKey'));
      if (roleId !== 'IssuerRole') expect(decrypting).toEqual([]);
      // No one may move the secret's stages or write it, but the issuer (the secret policy denies it anyway).
      const writing = statements(roleId).filter((st) => ['secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecret', 'secretsmanager:UpdateSecretVersionStage'].some((a) => grants(st, a)));
      expect(writing.map((st) => st.Resource)).toEqual(roleId === 'IssuerRole' ? [{ Ref: 'CaSecret' }] : []);
    }
    // Only EC2 may assume the node role: so no one can mint a session of it named after an instance, which is
    // what the issuer takes as proof of an instance's identity.
    expect(resource('NodeRole').Properties.AssumeRolePolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
    });
    // Likewise only Lambda may assume the functions' roles, whose sessions get etcd's root certificate.
    for (const id of ['LifecycleRole', 'BackupRole', 'ReconcileRole']) {
      expect(resource(id).Properties.AssumeRolePolicyDocument).toEqual({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' }],
      });
    }
    // Only the issuer's function runs as the issuer's role, and only once its access to the CAs exists.
    const asIssuer = Object.entries(template.Resources).filter(([, r]) => JSON.stringify((r.Properties as Record<string, unknown> | undefined)?.Role ?? '').includes('IssuerRole'));
    expect(asIssuer.map(([id]) => id)).toEqual(['IssuerLambdaFunction']);
    expect((resource('IssuerLambdaFunction') as Resource & { DependsOn?: string[] }).DependsOn).toEqual(expect.arrayContaining(['IssuerCaAccess']));

    expect(resource('CaSecret').Properties).toMatchObject({ KmsKeyId: { Ref: 'CaKey' }, SecretString: '{}' });
    const keyStatements = (resource('CaKey').Properties.KeyPolicy as { Statement: Array<Statement & { Principal: unknown; Condition?: unknown }> }).Statement;
    // The key decrypts only through Secrets Manager (never a ciphertext taken elsewhere), and grants nothing.
    for (const use of ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:Encrypt', 'kms:ReEncryptFrom', 'kms:CreateGrant']) {
      for (const st of keyStatements.filter((k) => grants(k, use))) {
        expect(['kms:Decrypt', 'kms:GenerateDataKey'], use).toContain(use);
        expect(st.Condition, use).toEqual({ StringEquals: { 'kms:ViaService': { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' } } });
      }
    }

    const policy = resource('CaSecretPolicy').Properties as { SecretId: unknown; BlockPublicPolicy: boolean; ResourcePolicy: { Statement: Array<Statement & { Principal: unknown; Condition: unknown }> } };
    expect(policy).toMatchObject({ SecretId: { Ref: 'CaSecret' }, BlockPublicPolicy: true });
    expect(policy.ResourcePolicy.Statement).toEqual([
      expect.objectContaining({
        Effect: 'Deny',
        Principal: '*',
        Action: expect.arrayContaining(['secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecret', 'secretsmanager:UpdateSecretVersionStage']) as unknown,
        Condition: { ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': ['IssuerRole', 'Arn'] } } },
      }),
    ]);
  });

  it('keeps the backup bucket private, encrypted, versioned, TLS-only, tidy and retained', () => {
    const bucket = template.Resources.BackupBucket as Resource & { DeletionPolicy?: string; UpdateReplacePolicy?: string };
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.UpdateReplacePolicy).toBe('Retain');
    expect(bucket.Properties).toMatchObject({
      VersioningConfiguration: { Status: 'Enabled' },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
    });
    expect(JSON.stringify(bucket.Properties.BucketEncryption)).toMatch(/aws:kms.*AES256/);
    const rules = (bucket.Properties.LifecycleConfiguration as { Rules: Array<Record<string, unknown>> }).Rules;
    expect(rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
        expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 } }),
      ]),
    );
    const policy = JSON.stringify(resource('BackupBucketPolicy').Properties.PolicyDocument);
    expect(policy).toContain('"aws:SecureTransport":"false"');
    expect(policy).toContain('"Effect":"Deny"');
  });

  it('defines both lifecycle hooks inline on the group, health checks that never replace a member for lacking quorum, and a load balancer check for routing only', () => {
    const group = resource('NodeGroup').Properties;
    expect(group.LifecycleHookSpecificationList).toEqual([
      { LifecycleHookName: 'etcd-launch', LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING', HeartbeatTimeout: 600, DefaultResult: 'ABANDON' },
      expect.objectContaining({
        LifecycleHookName: 'etcd-terminate',
        LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
        DefaultResult: 'CONTINUE',
        NotificationTargetARN: { 'Fn::GetAtt': ['LifecycleQueue', 'Arn'] },
        RoleARN: { 'Fn::GetAtt': ['LifecycleHookRole', 'Arn'] },
      }),
    ]);
    // EC2 status checks and the agents' own verdicts: etcd's /health fails everywhere while quorum is lost.
    expect(group).toMatchObject({ HealthCheckType: 'EC2', DesiredCapacity: { Ref: 'ClusterSize' }, MinSize: { Ref: 'ClusterSize' } });
    expect(byType('AWS::AutoScaling::LifecycleHook')).toEqual([]);
    // Strings, as CloudFormation compares them: a `--param="clusterSize=3"` arrives as "3".
    expect(template.Parameters.ClusterSize).toMatchObject({ AllowedValues: ['1', '3', '5', '7'], Default: '3' });
    // etcd's metrics port: /health without a client certificate, which the client port will require (#18).
    expect(resource('ClientTargetGroup').Properties).toMatchObject({ Port: 2379, HealthCheckPort: '2381', HealthCheckPath: '/health', HealthCheckProtocol: 'HTTP' });
    expect(resource('ClientLoadBalancer').Properties).toMatchObject({ Scheme: 'internal', Type: 'network' });
  });

  it('leaves room for the rolling update\'s extra instance at every cluster size, and the update waits for each successor\'s signal', () => {
    const node = template.Resources.NodeGroup as Resource & { UpdatePolicy: { AutoScalingRollingUpdate: Record<string, unknown> } };
    expect(node.Properties.MaxSize).toEqual({ 'Fn::FindInMap': ['ClusterSizes', { Ref: 'ClusterSize' }, 'MaxSize'] });
    const sizes = (template as unknown as { Mappings: { ClusterSizes: Record<string, { MaxSize: number }> } }).Mappings.ClusterSizes;
    for (const size of template.Parameters.ClusterSize?.AllowedValues as string[]) expect(sizes[size]?.MaxSize).toBe(Number(size) + 1);
    expect(node.UpdatePolicy.AutoScalingRollingUpdate).toEqual({
      MaxBatchSize: 1,
      MinInstancesInService: { Ref: 'ClusterSize' },
      PauseTime: 'PT30M',
      WaitOnResourceSignals: true,
      SuspendProcesses: ['HealthCheck', 'ReplaceUnhealthy', 'AZRebalance', 'AlarmNotification', 'ScheduledActions'],
    });
  });

  it('times the hooks, the queue and the functions so that every retry finds the instance still waiting', () => {
    const hooks = resource('NodeGroup').Properties.LifecycleHookSpecificationList as Array<{ LifecycleHookName: string; HeartbeatTimeout: number }>;
    const terminateHeartbeat = hooks.find((h) => h.LifecycleHookName === 'etcd-terminate')!.HeartbeatTimeout;
    const launchHeartbeat = hooks.find((h) => h.LifecycleHookName === 'etcd-launch')!.HeartbeatTimeout;
    const lifecycleTimeout = resource('LifecycleLambdaFunction').Properties.Timeout as number;
    const visibility = resource('LifecycleQueue').Properties.VisibilityTimeout as number;
    // AWS: the visibility timeout at least six times the function's; a failed attempt (which heartbeats first)
    // is redelivered one visibility timeout later, and may itself run a whole timeout.
    expect(visibility).toBeGreaterThanOrEqual(6 * lifecycleTimeout);
    expect(terminateHeartbeat).toBeGreaterThan(visibility + lifecycleTimeout);
    // The function knows the queue's last delivery (a last voter still waiting for a learner then goes after a final backup).
    const redrive = resource('LifecycleQueue').Properties.RedrivePolicy as { maxReceiveCount: number };
    const lifecycleEnv = (resource('LifecycleLambdaFunction').Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(Number(lifecycleEnv.ETCD_AWS_LIFECYCLE_MAX_RECEIVES)).toBe(redrive.maxReceiveCount);
    // Nothing else triggers the lifecycle function: one path, no concurrent duplicate.
    const triggers = [...byType('AWS::Lambda::EventSourceMapping'), ...byType('AWS::Events::Rule')].filter(([, r]) => JSON.stringify(r.Properties).includes('LifecycleLambdaFunction'));
    expect(triggers.map(([, r]) => r.Type)).toEqual(['AWS::Lambda::EventSourceMapping']);
    // The agent heartbeats the launching hook well within its timeout, and gives up before the update's PauseTime.
    const env = (resource('NodeLaunchTemplate').Properties.LaunchTemplateData as { UserData: { 'Fn::Base64': { 'Fn::Sub': [string] } } }).UserData['Fn::Base64']['Fn::Sub'][0];
    const setting = (name: string) => Number(new RegExp(`${name}=(\\d+)`).exec(env)?.[1]);
    expect(setting('ETCD_AWS_LAUNCH_HEARTBEAT_MS') * 2).toBeLessThanOrEqual(launchHeartbeat * 1000);
    expect(setting('ETCD_AWS_LAUNCH_TIMEOUT_MS')).toBeLessThan(30 * 60_000);
    // The final backup of a scale-in to zero runs in the backup function (15 min), heartbeating every 5 min.
    expect(resource('BackupLambdaFunction').Properties.Timeout).toBe(900);
    expect(300).toBeLessThan(terminateHeartbeat);
    // Every asynchronously invoked function has an on-failure destination.
    for (const fn of ['BackupLambdaFunction', 'ReconcileLambdaFunction']) {
      const config = byType('AWS::Lambda::EventInvokeConfig').find(([, r]) => JSON.stringify(r.Properties.FunctionName) === JSON.stringify({ Ref: fn }));
      expect(config?.[1].Properties.DestinationConfig).toEqual({ OnFailure: { Destination: { 'Fn::GetAtt': ['AsyncFailureQueue', 'Arn'] } } });
    }
  });

  it('deploys the newest 3.6 patch the test bed runs by default, and accepts exactly the etcd minors the test bed runs', () => {
    const parameter = template.Parameters.EtcdVersion;
    expect(parameter?.Default).toBe(resolveEtcd('3.6').version);
    const allowed = new RegExp(parameter?.AllowedPattern ?? '^$');
    const builds = etcdBuilds();
    expect(builds.map((b) => b.minor)).toEqual(['3.5', '3.6', '3.7']);
    for (const b of builds) expect(allowed.test(b.version)).toBe(true);
    for (const unsupported of ['3.4.23', '3.8.0', '3.6', 'latest']) expect(allowed.test(unsupported)).toBe(false);
  });

  it("gives every node etcd's default quota and an hour of periodic compaction, and reconcile the same quota", () => {
    // Prepare: the agent.env the user data writes, with the parameters' defaults in it.
    const [text, variables] = (resource('NodeLaunchTemplate').Properties.LaunchTemplateData as { UserData: { 'Fn::Base64': { 'Fn::Sub': [string, Record<string, unknown>] } } })
      .UserData['Fn::Base64']['Fn::Sub'];
    const rendered = text.replace(/\$\{([A-Za-z0-9:]+)\}/g, (_, name: string) => {
      const value = variables[name] ?? template.Parameters[name]?.Default;
      return typeof value === 'string' ? value : `value-of-${name}`;
    });
    const agentEnv = (parse(rendered) as { write_files: Array<{ path: string; content: string }> }).write_files.find((f) => f.path === '/etc/etcd-aws/agent.env');
    if (!agentEnv) throw new Error('no agent.env in the user data');
    const env = Object.fromEntries(agentEnv.content.trim().split('\n').map((line) => line.split(/=(.*)/s, 2) as [string, string]));

    // Act
    const agent = loadConfig(env, 'agent');

    // Assess: the defaults reach the agent, and the agent accepts them.
    expect(template.Parameters.QuotaBackendBytes).toMatchObject({ Type: 'Number', Default: '2147483648', MaxValue: MAX_QUOTA_BYTES });
    expect(template.Parameters.AutoCompactionMode).toMatchObject({ Default: 'periodic', AllowedValues: ['periodic', 'revision'] });
    expect(template.Parameters.AutoCompactionRetention).toMatchObject({ Default: '1h' });
    expect(env).toMatchObject({ ETCD_QUOTA_BACKEND_BYTES: '2147483648', ETCD_AUTO_COMPACTION_MODE: 'periodic', ETCD_AUTO_COMPACTION_RETENTION: '1h' });
    expect(agent.space).toEqual({ quotaBytes: 2 * 1024 ** 3, compaction: { mode: 'periodic', retention: '1h' } });
    // reconcile's DbQuotaPercent (and its alarm, and NOSPACE recovery) measure against the quota etcd enforces.
    const reconcileEnv = (resource('ReconcileLambdaFunction').Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(reconcileEnv.ETCD_QUOTA_BACKEND_BYTES).toEqual({ Ref: 'QuotaBackendBytes' });
    // TLS is on by default, with the issuer's name, and the server certificate may name the load balancer.
    expect(template.Parameters.Tls).toMatchObject({ Default: 'on', AllowedValues: ['on', 'migrating', 'off'] });
    expect(agent).toMatchObject({ scheme: 'https', tlsIssuer: 'value-of-IssuerFunction', pki: { serverDnsNames: ['value-of-serverdnsname'] } });
    expect(variables.IssuerFunction).toEqual({ Ref: 'IssuerLambdaFunction' });
    expect(variables.ServerDnsName).toEqual({ 'Fn::GetAtt': ['ClientLoadBalancer', 'DNSName'] });
  });

  it('runs every function that reaches etcd with TLS by the stack\'s parameter, asking this stack\'s issuer by its name', () => {
    const issuerName = resource('IssuerLambdaFunction').Properties.FunctionName;
    for (const fn of ['LifecycleLambdaFunction', 'BackupLambdaFunction', 'ReconcileLambdaFunction']) {
      const env = (resource(fn).Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(env.ETCD_AWS_TLS, fn).toEqual({ Ref: 'Tls' });
      expect(env.ETCD_AWS_ISSUER_FUNCTION, fn).toBe(issuerName);
    }
    expect(issuerName).toMatch(/-issuer$/);
  });

  it('refuses at deploy a quota or a retention the agent would refuse at boot, saying what is allowed', () => {
    const quota = template.Parameters.QuotaBackendBytes!;
    expect(quota.MaxValue).toBe(MAX_QUOTA_BYTES);
    expect(quota.MinValue).toBeGreaterThanOrEqual(1);
    expect(quota.ConstraintDescription).toMatch(/8589934592 \(8 GiB/);
    const retention = template.Parameters.AutoCompactionRetention!;
    expect(retention.AllowedPattern).toBe(COMPACTION_RETENTION_PATTERN.source);
    expect(retention.ConstraintDescription).toMatch(/1h, 30m or 1h30m/);
    const allowed = new RegExp(retention.AllowedPattern ?? '^$');
    for (const ok of ['1h', '30m', '1h30m', '24', '10000', '0']) expect(allowed.test(ok)).toBe(true);
    for (const bad of ['', '30s', '1d', '-1', '1.5h', '01h', 'off']) expect(allowed.test(bad)).toBe(false);
  });

  it('requires IMDSv2 on the nodes and encrypts their volumes', () => {
    const data = resource('NodeLaunchTemplate').Properties.LaunchTemplateData as Record<string, unknown>;
    expect(data.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 });
    for (const d of data.BlockDeviceMappings as Array<{ Ebs: { Encrypted: boolean } }>) expect(d.Ebs.Encrypted).toBe(true);
    expect(String(data.ImageId)).toContain('/aws/service/ami-amazon-linux-latest/al2023-ami');
  });

  it('opens 2379 only to the functions, the load balancer and the nodes, 2380 only between nodes, 2381 only to the load balancer, and no SSH', () => {
    const rules = byType('AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties);
    const nodeRules = rules.filter((r) => JSON.stringify(r.GroupId) === JSON.stringify({ Ref: 'NodeSecurityGroup' }));
    expect(nodeRules.map((r) => [r.FromPort, JSON.stringify(r.SourceSecurityGroupId)]).sort()).toEqual(
      [
        [2379, JSON.stringify({ Ref: 'FunctionSecurityGroup' })],
        [2379, JSON.stringify({ Ref: 'LoadBalancerSecurityGroup' })],
        [2379, JSON.stringify({ Ref: 'NodeSecurityGroup' })],
        [2380, JSON.stringify({ Ref: 'NodeSecurityGroup' })],
        [2381, JSON.stringify({ Ref: 'LoadBalancerSecurityGroup' })],
      ].sort(),
    );
    for (const r of rules) {
      expect(r.CidrIp).toBeUndefined();
      expect(r.FromPort).not.toBe(22);
    }
    for (const [, sg] of byType('AWS::EC2::SecurityGroup')) expect(sg.Properties.SecurityGroupIngress).toBeUndefined();
  });

  it('alarms on what puts data or quorum at risk, to a topic CloudWatch can publish to', () => {
    const alarms = Object.fromEntries(byType('AWS::CloudWatch::Alarm').map(([id, r]) => [id, r.Properties]));
    expect(Object.keys(alarms).sort()).toEqual(
      [
        'AsyncFailuresAlarm',
        'BackupAgeAlarm',
        'DbQuotaAlarm',
        'FullOfLiveDataAlarm',
        'HealthyMembersAlarm',
        'LaunchesPendingAlarm',
        'LifecycleDeadLetterAlarm',
        'LifecycleFailuresAlarm',
        'LifecycleQueueAgeAlarm',
        'OrphansAlarm',
        'QuorumLostAlarm',
      ].sort(),
    );
    expect(alarms.BackupAgeAlarm).toMatchObject({ MetricName: 'BackupAgeSeconds', TreatMissingData: 'breaching', Namespace: 'EtcdAws' });
    expect(alarms.HealthyMembersAlarm).toMatchObject({ TreatMissingData: 'breaching', Threshold: { Ref: 'ClusterSize' } });
    // Quorum lost in under two minutes: the load balancer's healthy targets (etcd's /health), one-minute periods.
    expect(alarms.QuorumLostAlarm).toMatchObject({ Namespace: 'AWS/NetworkELB', MetricName: 'HealthyHostCount', Period: 60, EvaluationPeriods: 1, Threshold: 1 });
    expect(alarms.DbQuotaAlarm).toMatchObject({ MetricName: 'DbQuotaPercent', Threshold: 80 });
    // reconcile's NOSPACE recovery disarms below 80% (ETCD_AWS_NOSPACE_RECOVER_BELOW): over it, this alarm says so.
    expect(alarms.FullOfLiveDataAlarm).toMatchObject({ Namespace: 'EtcdAws', MetricName: 'FullOfLiveData', Threshold: 0, ComparisonOperator: 'GreaterThanThreshold', DatapointsToAlarm: 2 });
    // alias/aws/sns cannot be used by CloudWatch: a key of the stack's own whose policy lets CloudWatch use it.
    expect(resource('AlarmTopic').Properties.KmsMasterKeyId).toEqual({ Ref: 'AlarmKey' });
    const keyPolicy = JSON.stringify(resource('AlarmKey').Properties.KeyPolicy);
    expect(keyPolicy).toContain('"Service":"cloudwatch.amazonaws.com"');
    expect(keyPolicy).toMatch(/kms:Decrypt.*kms:GenerateDataKey\*/);
    expect(resource('AlarmKey').Properties.EnableKeyRotation).toBe(true);
    expect(Object.keys(template.Outputs)).toEqual(expect.arrayContaining(['ClientEndpoint', 'BackupBucketName', 'AutoScalingGroupName', 'LifecycleQueueUrl']));
  });

  it('renders user data whose install script passes bash -n and pins the agent it downloads to its SHA-256', async () => {
    const sub = (resource('NodeLaunchTemplate').Properties.LaunchTemplateData as { UserData: { 'Fn::Base64': { 'Fn::Sub': [string, Record<string, unknown>] } } })
      .UserData['Fn::Base64']['Fn::Sub'];
    const [text, variables] = sub;
    expect(variables.AgentSha256).toMatch(/^[0-9a-f]{64}$/);
    const rendered = text.replace(/\$\{([A-Za-z0-9:]+)\}/g, (_, name: string) => {
      const value = variables[name];
      return typeof value === 'string' ? value : `value-of-${name}`;
    });
    expect(rendered.startsWith('#cloud-config\n')).toBe(true);
    const config = parse(rendered) as { write_files: Array<{ path: string; content: string }>; runcmd: unknown[] };
    const script = config.write_files.find((f) => f.path === '/usr/local/sbin/etcd-aws-install.sh');
    if (!script) throw new Error('no install script in the user data');
    const file = path.join(out, 'install.sh');
    writeFileSync(file, script.content);
    await run('bash', ['-n', file]);
    expect(script.content).toMatch(/sha256sum -c -/);
    expect(config.runcmd).toEqual([['/usr/local/sbin/etcd-aws-install.sh']]);
    expect(rendered).not.toMatch(/(SECRET|PASSWORD|TOKEN)[A-Z_]*=|aws_secret_access_key/i);
    // The agent's settings file carries the stack's choice about forced recovery after a majority loss.
    const env = config.write_files.find((f) => f.path === '/etc/etcd-aws/agent.env');
    expect(env?.content).toContain('ETCD_AWS_QUORUM_RECOVERY=value-of-QuorumRecovery');
    expect(template.Parameters.QuorumRecovery).toMatchObject({ AllowedValues: ['auto', 'off'], Default: 'auto' });
  });
});
