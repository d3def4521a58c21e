#!/usr/bin/env node
/**
 * The node agent: a thin CLI that cloud-init starts (through systemd) on every etcd instance.
 *
 *   run       bootstrap (restart, join, or found through the seed election), then start and supervise etcd
 *   plan      print the decision, its reason and the etcd settings it would use; start and change nothing
 *   discover  print identity, group, instances and the live cluster as JSON
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { ImdsIdentitySource } from '../core/aws/identity.js';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { S3SeedCoordinator } from '../core/aws/seed-coordinator.js';
import { loadConfig, type AgentConfig } from '../core/config.js';
import { etcdEnvironment, type Self } from '../core/domain/bootstrap.js';
import type { SeedLease } from '../core/domain/election.js';
import { activePeers, clientUrls } from '../core/domain/instances.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { readLocalMember } from '../core/etcd/wal.js';
import { EtcdAwsError, describeError } from '../core/errors.js';
import type { Log } from '../core/logger.js';
import type { InstanceIdentity } from '../core/ports.js';
import { bootstrap, observe, previewLaunch, promoteWhenReady, type BootstrapDeps } from '../core/use-cases/bootstrap.js';
import { discoverCluster, resolveGroup } from '../core/use-cases/discover.js';
import { assertDataDirWritable, setAsideDataDir } from './data-dir.js';
import { findEtcdBinary, startEtcd } from './etcd-process.js';
import { stderrJsonLog } from './log.js';

const USAGE = `usage: node-agent <command>

commands:
  run        bootstrap this instance's etcd member, then start etcd and supervise it (the systemd command)
  plan       print what run would do and the etcd settings it would use; starts and changes nothing
  discover   print this instance's identity, its group, the group's instances and the live cluster (JSON)

Settings come from the environment; see the README's configuration table.`;

interface Context {
  readonly config: AgentConfig;
  readonly identity: InstanceIdentity;
  readonly self: Self;
  readonly groupName: string;
  readonly inventory: AwsInstanceInventory;
  readonly s3: S3Client;
}

async function context(config: AgentConfig): Promise<Context> {
  const identity = await new ImdsIdentitySource().identity();
  const clients = { region: identity.region };
  const inventory = new AwsInstanceInventory(new AutoScalingClient(clients), new EC2Client(clients));
  const groupName = await resolveGroup(identity, inventory, config.asgName);
  return {
    config,
    identity,
    self: { instanceId: identity.instanceId, privateIp: identity.privateIp },
    groupName,
    inventory,
    s3: new S3Client(clients),
  };
}

function bootstrapDeps(ctx: Context, log: Log): BootstrapDeps {
  const { config } = ctx;
  return {
    inventory: ctx.inventory,
    openMembership: (endpoints) => new Etcd3Cluster(endpoints, config),
    seeds: new S3SeedCoordinator(ctx.s3, config.bucket, config.prefix, ctx.groupName),
    localData: () => readLocalMember(config.dataDir),
    setAsideLocalData: () => setAsideDataDir(config.dataDir, new Date()),
    now: () => Date.now(),
    sleep: (ms) => sleep(ms),
    log,
    clientPort: config.clientPort,
    peerPort: config.peerPort,
    timing: config.timing,
  };
}

async function discover(config: AgentConfig, log: Log): Promise<number> {
  const ctx = await context(config);
  const view = await discoverCluster(
    ctx.groupName,
    { inventory: ctx.inventory, openCluster: (e) => new Etcd3Cluster(e, config), clientPort: config.clientPort, log },
    config.endpoints,
  );
  process.stdout.write(`${JSON.stringify({ identity: ctx.identity, ...view }, null, 2)}\n`);
  return 0;
}

async function plan(config: AgentConfig, log: Log): Promise<number> {
  const ctx = await context(config);
  const observation = await observe(ctx.self, ctx.groupName, bootstrapDeps(ctx, log));
  const launch = previewLaunch(ctx.self, ctx.groupName, observation, config.peerPort);
  const env = launch
    ? etcdEnvironment({ self: ctx.self, dataDir: config.dataDir, clientPort: config.clientPort, peerPort: config.peerPort, launch, inherited: process.env })
    : undefined;
  process.stdout.write(
    `${JSON.stringify({ instanceId: ctx.self.instanceId, groupName: ctx.groupName, decision: observation.plan, local: observation.local, probe: observation.probe.kind, etcdEnvironment: env }, null, 2)}\n`,
  );
  return 0;
}

async function run(config: AgentConfig, log: Log): Promise<number> {
  // Preflight: fail before touching anything.
  const binary = await findEtcdBinary(config.binDir);
  await assertDataDirWritable(config.dataDir);
  const ctx = await context(config);
  log.info('starting', { instanceId: ctx.self.instanceId, privateIp: ctx.self.privateIp, groupName: ctx.groupName });
  const deps = bootstrapDeps(ctx, log);
  const outcome = await bootstrap(ctx.self, ctx.groupName, deps);
  const env = etcdEnvironment({
    self: ctx.self,
    dataDir: config.dataDir,
    clientPort: config.clientPort,
    peerPort: config.peerPort,
    launch: outcome.launch,
    inherited: process.env,
  });
  log.info('starting etcd', { decision: outcome.plan.kind, reason: outcome.plan.reason, state: outcome.launch.state, initialCluster: env.ETCD_INITIAL_CLUSTER });
  const etcd = startEtcd(binary, env, log);
  const state = { stopped: false };
  void etcd.exited.then(() => {
    state.stopped = true;
  });
  const selfUrl = `http://${ctx.self.privateIp}:${config.clientPort}`;

  const wonLease = outcome.lease;
  if (wonLease !== undefined) {
    // Keep the seed lease until the new cluster serves, so no one takes it over while etcd starts.
    void (async () => {
      let lease: SeedLease = wonLease;
      while (!state.stopped) {
        const local = new Etcd3Cluster([selfUrl], config);
        const serving = await local.status(selfUrl).then((s) => s.leaderId !== '0', () => false);
        local.close();
        if (serving) return;
        await sleep(Math.max(config.timing.leaseMs / 3, 100));
        const held = lease;
        lease = (await deps.seeds.writeLease(ctx.self.instanceId, Date.now() + config.timing.leaseMs, held.etag).catch(() => held)) ?? held;
      }
    })();
  }
  if (outcome.learnerId !== undefined) {
    const learnerId = outcome.learnerId;
    void (async () => {
      const instances = await ctx.inventory.instancesOf(ctx.groupName);
      const peers = clientUrls(activePeers(instances).filter((i) => i.instanceId !== ctx.self.instanceId), config.clientPort);
      await promoteWhenReady(learnerId, () => new Etcd3Cluster(peers.length > 0 ? peers : [selfUrl], config), {
        sleep: (ms) => sleep(ms),
        log,
        stopped: () => state.stopped,
      });
    })().catch((error: unknown) => log.error('promotion stopped', { error: describeError(error) }));
  }
  return etcd.exited;
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const commands: Record<string, (config: AgentConfig, log: Log) => Promise<number>> = { run, plan, discover };
  const handler = commands[command];
  if (!handler) {
    process.stderr.write(`node-agent: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  const log = stderrJsonLog('node-agent', process.env.POWERTOOLS_LOG_LEVEL);
  return handler(loadConfig(process.env, 'agent'), log);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const what = error instanceof EtcdAwsError ? error.message : `unexpected failure: ${describeError(error)}`;
    process.stderr.write(`node-agent: ${what}\n`);
    process.exit(1);
  },
);
