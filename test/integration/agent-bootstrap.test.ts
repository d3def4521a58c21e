import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { S3SeedCoordinator } from '../../core/aws/seed-coordinator.js';
import { build } from '../../scripts/build.mjs';
import { AgentFleet, waitForVotingMembers } from '../../testbed/agents.js';
import { createSimulatedGroup, terminateInGroup, type SimulatedGroup } from '../../testbed/aws-world.js';
import { etcdBin, etcdRelease, etcdutlBin } from '../../testbed/tools.js';
import { waitFor } from '../../testbed/wait.js';
import { openBed, uniqueName, type Bed } from '../support/testbed.js';

let bed: Bed;
let bundle: string;
const bucket = uniqueName('agents').toLowerCase();
let fleet: AgentFleet | undefined;

beforeAll(async () => {
  bed = openBed('agents');
  ({ agent: bundle } = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true }));
  await new S3Client({ forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: bucket }));
});

afterEach(async () => {
  await fleet?.closeAll();
  fleet = undefined;
});

afterAll(async () => {
  await bed.dispose();
});

function newFleet(label: string, env: Record<string, string> = {}): AgentFleet {
  fleet = new AgentFleet({
    processes: bed.processes,
    workDir: path.join(bed.workDir, uniqueName(label)),
    bundle,
    bucket,
    awsEndpoint: process.env.AWS_ENDPOINT_URL as string,
    env,
  });
  return fleet;
}

const urls = (instances: SimulatedGroup['instances']) => instances.map((i) => `http://${i.privateIp}:2379`);
const names = (instances: SimulatedGroup['instances']) => instances.map((i) => i.instanceId);

/** A group of three whose agents formed one cluster of three voting members. */
async function formedCluster(label: string) {
  const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 3 });
  const agents = newFleet(label);
  await Promise.all(group.instances.map((i) => agents.start(i)));
  const cluster = await waitForVotingMembers(urls(group.instances), names(group.instances));
  return { group, agents, cluster };
}

describe('node agent bootstrap', () => {
  it.each(Array.from({ length: 10 }, (_, i) => i + 1))(
    'three agents started in the same moment form exactly one cluster of three voting members (run %i of 10)',
    async () => {
      const { group, cluster } = await formedCluster('three');
      expect(cluster.clusterIds).toHaveLength(1);
      expect(cluster.members.map((m) => m.name).sort()).toEqual(names(group.instances).sort());
    },
  );

  it("serves each member's health on its metrics port in plain HTTP, what the load balancer checks", async () => {
    const { group } = await formedCluster('metrics');
    for (const i of group.instances) {
      const health = await waitFor(`etcd ${i.instanceId} to report healthy on its metrics port`, async () => {
        const res = await fetch(`http://${i.privateIp}:2381/health`, { signal: AbortSignal.timeout(2000) });
        const body = (await res.json()) as { health?: string };
        return body.health === 'true' ? body : undefined;
      });
      expect(health).toMatchObject({ health: 'true' });
    }
  });

  it('reboot with an intact data dir: the member restarts as is, no membership change', async () => {
    const { group, agents, cluster } = await formedCluster('reboot');
    const target = group.instances[0]!;

    await agents.stop(target.instanceId);
    await agents.start(target);
    const after = await waitForVotingMembers(urls(group.instances), names(group.instances));

    expect(after.members.map((m) => m.id).sort()).toEqual(cluster.members.map((m) => m.id).sort());
    expect(after.clusterIds).toEqual(cluster.clusterIds);
  });

  it('member entry exists but its data dir was lost: the stale member is removed, re-added, and joins', async () => {
    const { group, agents, cluster } = await formedCluster('lost-data');
    const target = group.instances[1]!;
    const oldId = cluster.members.find((m) => m.name === target.instanceId)!.id;

    await agents.kill(target.instanceId);
    agents.wipe(target.instanceId);
    await agents.start(target);
    const after = await waitForVotingMembers(urls(group.instances), names(group.instances), 60_000, (s) =>
      s.members.every((m) => m.id !== oldId),
    );

    const newId = after.members.find((m) => m.name === target.instanceId)!.id;
    expect(newId).not.toBe(oldId);
    expect(after.clusterIds).toEqual(cluster.clusterIds);
  });

  it('an instance and its data are lost with no lifecycle hook: its replacement removes the dead member, then joins', async () => {
    const { group, agents, cluster } = await formedCluster('replace');
    const dead = group.instances[2]!;

    await agents.kill(dead.instanceId);
    const replacement = await terminateInGroup(group.groupName, dead.instanceId, true);
    if (!replacement) throw new Error('the emulated group launched no replacement instance');
    await agents.start(replacement);
    const survivors = group.instances.filter((i) => i.instanceId !== dead.instanceId);
    const after = await waitForVotingMembers(urls([...survivors, replacement]), names([...survivors, replacement]));

    expect(after.members.some((m) => m.name === dead.instanceId)).toBe(false);
    expect(after.clusterIds).toEqual(cluster.clusterIds);
  });

  it('the would-be seeder dies holding the seed lease: the others still form one cluster', async () => {
    // Prepare: the first instance's etcd never comes up (a binary that hangs), so it wins the lease and
    // then sits on it; the other two agents are registered as waiting so its election can proceed.
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 3 });
    const [doomed, b, c] = group.instances as [SimulatedGroup['instances'][number], SimulatedGroup['instances'][number], SimulatedGroup['instances'][number]];
    const hangDir = path.join(bed.workDir, uniqueName('hanging-etcd'));
    mkdirSync(hangDir, { recursive: true });
    // It reports its version like etcd does (the agent checks it before anything else), then hangs.
    writeFileSync(path.join(hangDir, 'etcd'), `#!/bin/sh\n[ "$1" = --version ] && exec ${etcdBin()} --version\nexec sleep 600\n`, { mode: 0o755 });
    symlinkSync(etcdutlBin(), path.join(hangDir, 'etcdutl')); // the restore tool it also needs
    const seeds = new S3SeedCoordinator(new S3Client({ forcePathStyle: true }), bucket, '', group.groupName);
    for (const peer of [b, c]) await seeds.register({ instanceId: peer.instanceId, hasData: false, at: Date.now() });
    const agents = newFleet('dead-seeder');
    await agents.start(doomed, { ETCD_AWS_BIN_DIR: hangDir });
    await waitFor('the first agent to win the seed lease', async () => (await seeds.readLease())?.holder === doomed.instanceId, {
      timeoutMs: 30_000,
    });
    await Promise.all([agents.start(b), agents.start(c)]);

    // Act: the seeder's instance dies and the group takes it out (health check), replacing nothing yet.
    await agents.kill(doomed.instanceId);
    await terminateInGroup(group.groupName, doomed.instanceId, false);

    // Assess: the lease expires and is taken over; one of the two founds, the other joins.
    const after = await waitForVotingMembers(urls([b, c]), names([b, c]), 60_000);
    expect(after.clusterIds).toHaveLength(1);
    expect([b.instanceId, c.instanceId]).toContain((await seeds.readLease())?.holder);
  });
});

describe('node agent refuses bad input', () => {
  const runAgentOnce = async (label: string, env: Record<string, string>, asNobody = false) => {
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 1 });
    const agents = newFleet(label, env);
    let agentBundle = bundle;
    const nobodyEnv: Record<string, string> = {};
    if (asNobody) {
      // Where nobody can read them: the bundle and the etcd binaries (the build cache may be in root's home).
      const shared = path.join('/tmp', uniqueName('agent-bundle'));
      mkdirSync(shared, { recursive: true, mode: 0o755 });
      cpSync(bundle, path.join(shared, 'node-agent.mjs'));
      chmodSync(path.join(shared, 'node-agent.mjs'), 0o644);
      agentBundle = path.join(shared, 'node-agent.mjs');
      cpSync(etcdRelease().binDir, path.join(shared, 'bin'), { recursive: true });
      chmodSync(path.join(shared, 'bin'), 0o755);
      nobodyEnv.ETCD_AWS_BIN_DIR = path.join(shared, 'bin');
    }
    const node = await agents.start(group.instances[0]!, nobodyEnv, asNobody ? { uid: 65534, gid: 65534, bundle: agentBundle } : undefined);
    const code = await node.process!.exited;
    return { code, log: readFileSync(node.logFile, 'utf8'), dataDir: node.dataDir };
  };

  it('etcd binary missing: a clear error, exit 1, no data dir created', async () => {
    const out = await runAgentOnce('no-etcd', { ETCD_AWS_BIN_DIR: '/nonexistent/etcd-bin' });
    expect(out.code).toBe(1);
    expect(out.log).toContain('no executable etcd in ETCD_AWS_BIN_DIR=/nonexistent/etcd-bin');
    expect(existsSync(out.dataDir)).toBe(false);
  });

  it('data dir not writable: a clear error, exit 1, nothing touched', async () => {
    const readOnly = path.join('/tmp', uniqueName('read-only'));
    mkdirSync(readOnly, { mode: 0o555 });
    chmodSync(readOnly, 0o555);
    const asRoot = process.getuid?.() === 0;
    // Root ignores permission bits: run the agent as nobody there, as the agent's own user elsewhere.
    const out = await runAgentOnce('read-only', { ETCD_DATA_DIR: path.join(readOnly, 'etcd') }, asRoot);
    expect(out.code).toBe(1);
    expect(out.log).toContain(`ETCD_DATA_DIR ${path.join(readOnly, 'etcd')} is not writable`);
    expect(existsSync(path.join(readOnly, 'etcd'))).toBe(false);
  });
});
