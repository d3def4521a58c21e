import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hexMemberId } from '../../core/domain/members.js';
import { build } from '../../scripts/build.mjs';
import type { SimulatedGroup } from '../../testbed/aws-world.js';
import type { EtcdTestCluster } from '../../testbed/etcd.js';
import { startImds, type ImdsServer } from '../../testbed/imds.js';
import { emulatorEnv } from '../../testbed/moto.js';
import { etcdRelease, etcdctlBin } from '../../testbed/tools.js';
import { groupWithCluster, openBed, type Bed } from '../support/testbed.js';

// The bundles are what ships: these tests run them in fresh node processes, as Lambda and cloud-init would,
// so a bundle that cannot load etcd3's protos or loses 64-bit member IDs fails here.
const run = promisify(execFile);

let bed: Bed;
let group: SimulatedGroup;
let etcd: EtcdTestCluster;
let bundles: Awaited<ReturnType<typeof build>>;
const imdsServers: ImdsServer[] = [];

function baseEnv(): NodeJS.ProcessEnv {
  const keep = ['PATH', 'HOME', 'TMPDIR', 'LANG'];
  return {
    ...Object.fromEntries(keep.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]])),
    ...emulatorEnv(process.env.AWS_ENDPOINT_URL as string),
    BACKUP_BUCKET: 'etcd-aws-bundles-test',
    ETCD_AWS_DIAL_TIMEOUT_MS: '1000',
    ETCD_AWS_CALL_TIMEOUT_MS: '2000',
  };
}

async function agent(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bundles.agent, ...args], { env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function imdsFor(identity: SimulatedGroup['instances'][number]): Promise<ImdsServer> {
  const server = await startImds(identity);
  imdsServers.push(server);
  return server;
}

beforeAll(async () => {
  bed = openBed('bundles');
  bundles = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true });
  ({ group, etcd } = await groupWithCluster(bed, 3));
});

afterAll(async () => {
  await Promise.all(imdsServers.map((s) => s.close()));
  await bed.dispose();
});

describe('node-agent bundle', () => {
  it('discovers its identity through IMDSv2, its group and the live cluster, with exact member IDs', async () => {
    // Prepare
    const self = group.instances[1]!;
    const imds = await imdsFor(self);

    // Act
    const out = await agent(['discover'], { ...baseEnv(), AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint });

    // Assess
    expect(out.stderr).not.toContain('unexpected');
    expect(out.code).toBe(0);
    const view = JSON.parse(out.stdout) as {
      identity: { instanceId: string; privateIp: string };
      groupName: string;
      cluster: { live: boolean; members: Array<{ id: string; name: string; isLearner: boolean }> };
    };
    expect(view.identity).toMatchObject({ instanceId: self.instanceId, privateIp: self.privateIp });
    expect(view.groupName).toBe(group.groupName);
    expect(view.cluster.live).toBe(true);
    const table = execFileSync(etcdctlBin(), ['--endpoints', etcd.clientUrls().join(','), 'member', 'list'], { encoding: 'utf8' });
    expect(view.cluster.members).toHaveLength(3);
    for (const m of view.cluster.members) expect(table).toContain(`${hexMemberId(m.id)}, started, ${m.name},`);
    expect(imds.requests[0]).toBe('PUT /latest/api/token');
  });

  it('refuses clearly when the instance is in no Auto Scaling group', async () => {
    const stranger = { ...group.instances[0]!, instanceId: 'i-0000000000000dead' };
    const imds = await imdsFor(stranger);
    const out = await agent(['discover'], { ...baseEnv(), AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint });
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('instance i-0000000000000dead is not in any Auto Scaling group');
    expect(out.stderr).toContain('ETCD_ASG_NAME');
  });

  it('refuses clearly when IMDS does not answer', async () => {
    const out = await agent(['discover'], { ...baseEnv(), AWS_EC2_METADATA_SERVICE_ENDPOINT: 'http://127.0.0.1:9' });
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('cannot read the instance identity from IMDSv2');
    expect(out.stderr).toContain('AWS_EC2_METADATA_SERVICE_ENDPOINT');
  });

  it('plan prints the decision, its reason and the etcd settings, and changes nothing', async () => {
    // Prepare: this instance's etcd runs, but the agent's data dir is empty (as after a lost disk)
    const self = group.instances[2]!;
    const imds = await imdsFor(self);
    const before = execFileSync(etcdctlBin(), ['--endpoints', etcd.clientUrls().join(','), 'member', 'list'], { encoding: 'utf8' });

    // Act
    const out = await agent(['plan'], {
      ...baseEnv(),
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
      ETCD_DATA_DIR: path.join(bed.workDir, 'plan-data'),
      ETCD_AWS_BIN_DIR: etcdRelease().binDir,
    });

    // Assess
    expect(out.code).toBe(0);
    const plan = JSON.parse(out.stdout) as {
      etcdVersion: string;
      decision: { kind: string; reason: string; removeFirst: Array<{ member: { name: string }; reason: string }> };
      etcdEnvironment: Record<string, string>;
    };
    expect(plan.etcdVersion).toBe(etcdRelease().version);
    expect(plan.decision).toMatchObject({ kind: 'join', reason: 'no-local-data' });
    expect(plan.decision.removeFirst).toEqual([expect.objectContaining({ reason: 'named-after-this-instance', member: expect.objectContaining({ name: self.instanceId }) as unknown })]);
    expect(plan.etcdEnvironment).toMatchObject({
      ETCD_NAME: self.instanceId,
      ETCD_INITIAL_CLUSTER_STATE: 'existing',
      ETCD_LISTEN_PEER_URLS: `http://${self.privateIp}:2380`,
    });
    const after = execFileSync(etcdctlBin(), ['--endpoints', etcd.clientUrls().join(','), 'member', 'list'], { encoding: 'utf8' });
    expect(after).toBe(before);
    expect(existsSync(path.join(bed.workDir, 'plan-data'))).toBe(false);
  });

  it('rejects an unknown command with usage and exit code 2', async () => {
    const out = await agent(['bootstrapp'], baseEnv());
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('unknown command "bootstrapp"');
  });
});

describe('reconcile bundle', () => {
  const invoke = async (env: NodeJS.ProcessEnv) => {
    const script = `const m = await import(${JSON.stringify(pathToFileURL(bundles.functions.reconcile!).href)});
      const r = await m.handler({}, {});
      process.stdout.write('RESULT ' + JSON.stringify(r) + '\\n');`;
    return run(process.execPath, ['--input-type=module', '-e', script], { env, timeout: 60_000 });
  };

  it('reports the cluster as metrics and as its result', async () => {
    const { stdout } = await invoke({ ...baseEnv(), ETCD_ASG_NAME: group.groupName });
    const result = JSON.parse(stdout.split('\n').find((l) => l.startsWith('RESULT '))!.slice(7)) as Record<string, unknown>;
    expect(result).toMatchObject({
      groupName: group.groupName,
      reachable: true,
      activeInstances: 3,
      members: 3,
      votingMembers: 3,
      healthyMembers: 3,
      orphans: [],
      instancesWithoutMember: [],
    });
    // Powertools Metrics writes CloudWatch EMF lines to stdout.
    const emf = stdout.split('\n').filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(emf.some((e) => e.Members === 3 && e.HealthyMembers === 3 && e.AutoScalingGroup === group.groupName)).toBe(true);
  });

  it('fails at cold start naming the missing setting', async () => {
    await expect(invoke(baseEnv())).rejects.toThrow('ETCD_ASG_NAME is required (the Auto Scaling group of the etcd nodes)');
  });
});
