#!/usr/bin/env node
/**
 * The node agent: a thin CLI that cloud-init starts (through systemd) on every etcd instance.
 *
 *   run       bootstrap (restart, join, or found through the seed election), then start and supervise etcd;
 *             after a permanent loss of quorum, the survivor with the newest data restarts it as a new cluster
 *   plan      print the decision, its reason and the etcd settings it would use; start and change nothing
 *   discover  print identity, group, instances and the live cluster as JSON
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { stsEndpoint } from '../core/aws/caller-identity.js';
import { ImdsIdentitySource } from '../core/aws/identity.js';
import { CertificateRefusedError, requestCertificate, requestCertificateForCsr, type IssuerClientDeps } from '../core/aws/issuer-client.js';
import { nextCertificateCheckMs, type CertificateKind } from '../core/domain/issuance.js';
import { AwsInstanceLifecycle, CloudFormationStackSignals, NO_STACK_SIGNALS } from '../core/aws/instance-lifecycle.js';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { S3SeedCoordinator } from '../core/aws/seed-coordinator.js';
import { S3SnapshotStore } from '../core/aws/s3-snapshot-store.js';
import { loadConfig, type AgentConfig } from '../core/config.js';
import { pairBackups, snapshotFolder } from '../core/domain/backups.js';
import { etcdEnvironment, forceNewClusterEnvironment, type EtcdTlsFiles, type Self } from '../core/domain/bootstrap.js';
import type { SeedLease } from '../core/domain/election.js';
import { checkLocalVersion, formatVersion, type EtcdVersion } from '../core/domain/versions.js';
import { crashLoopVerdict, DEFAULT_CRASH_LOOP, interruptedFirstStart } from '../core/domain/health.js';
import { activePeers, clientUrls, runningPeers } from '../core/domain/instances.js';
import { hexMemberId, memberOfInstance } from '../core/domain/members.js';
import { othersHoldQuorum } from '../core/domain/health.js';
import { Etcd3Cluster, type EtcdClientOptions } from '../core/etcd/cluster.js';
import { EtcdRestoreTool, toolVersion } from '../core/etcd/restore-tool.js';
import { readLocalMember } from '../core/etcd/wal.js';
import { ConfigError, EtcdAwsError, EtcdUnavailableError, describeError } from '../core/errors.js';
import type { Log } from '../core/logger.js';
import type { InstanceIdentity } from '../core/ports.js';
import {
  BootstrapRefusedError,
  bootstrap,
  observe,
  previewLaunch,
  promoteWhenReady,
  type BootstrapDeps,
  type BootstrapOutcome,
} from '../core/use-cases/bootstrap.js';
import { abandonLaunch, finishLaunch, reportHealth, type LaunchDeps } from '../core/use-cases/launch.js';
import { recoverFromQuorumLoss } from '../core/use-cases/quorum-recovery.js';
import { publishServingState } from '../core/use-cases/serving-heartbeat.js';
import { restoreBackup, seedFromBackups } from '../core/use-cases/restore.js';
import { discoverCluster, resolveGroup } from '../core/use-cases/discover.js';
import { assertDataDirWritable, setAsideDataDir } from './data-dir.js';
import { findEtcdBinary, superviseEtcd, type SupervisedEtcd } from './etcd-process.js';
import { respondToFailure } from './failures.js';
import { RunHistory } from './run-history.js';
import { certificateFiles, ensureCertificates, installedValidity } from './certificates.js';
import { ensureAuthentication } from '../core/use-cases/authentication.js';
import { stderrJsonLog } from './log.js';

const USAGE = `usage: node-agent <command> [options]

commands:
  run        bootstrap this instance's etcd member, then start etcd and supervise it (the systemd command)
  plan       print what run would do and the etcd settings it would use; starts and changes nothing
  discover   print this instance's identity, its group, the group's instances and the live cluster (JSON)
  backups    list the group's valid backups, newest first (JSON)
  certificates  obtain this node's peer, server and client certificates from the issuer
             (ETCD_AWS_ISSUER_FUNCTION) into ETCD_AWS_CERT_DIR, or renew them when a third of their
             lifetime is left; prints the files (JSON)
  user-certificate --csr <file>
             sign an etcd user's CSR (its CN is the user; ECDSA P-256, no addresses) through the issuer
             with this node's identity; prints the certificate (PEM). The CA to trust is
             ETCD_AWS_CERT_DIR/current/client-ca.crt. Create the user and its roles in etcd first (README)
  restore    restore one backup into an empty ETCD_DATA_DIR for a deliberate full-cluster restore:
               --key <snapshot key>   that backup
               --at <ISO time>        the newest backup taken at or before that time
             then start the agent (run) on this node first; the others join it

Settings come from the environment; see the README's configuration table.`;

/** How long etcd may take to stop before it is killed; without quorum it may never finish on its own. */
const ETCD_STOP_TIMEOUT_MS = 10_000;

interface Context {
  readonly config: AgentConfig;
  readonly identity: InstanceIdentity;
  readonly self: Self;
  readonly groupName: string;
  readonly inventory: AwsInstanceInventory;
  readonly s3: S3Client;
  /** How the agent's etcd clients connect: plaintext, or with its `etcd-aws-agent` certificate. */
  readonly etcd: EtcdClientOptions;
}

/**
 * The agent's etcd client options: plaintext (also while the stack migrates: the members launched before
 * serve nothing else), or (ETCD_AWS_TLS=on) its `etcd-aws-agent` client certificate, read from the
 * generation `current` points at when each client is made, so a renewal in between never pairs a new
 * certificate with an old key.
 */
function etcdClientOptions(config: AgentConfig): EtcdClientOptions {
  if (config.tlsIssuer === undefined || config.scheme === 'http') return config;
  return {
    ...config,
    tls: () => {
      const files = certificateFiles(config.pki.dir);
      let generation: string;
      try {
        generation = realpathSync(path.dirname(files.clientCaFile));
      } catch (error) {
        throw new EtcdUnavailableError(`no client certificate in ${config.pki.dir} yet: the agent obtains it from the issuer before it starts etcd`, { cause: error });
      }
      const read = (file: string) => readFileSync(path.join(generation, path.basename(file)));
      return { caPem: read(files.clientCaFile), certPem: read(files.cert.client.certFile), keyPem: read(files.cert.client.keyFile) };
    },
  };
}

/** The files etcd is started with under ETCD_AWS_TLS=on or migrating (through `current`, so renewals reach etcd). */
function etcdTlsFiles(config: AgentConfig): EtcdTlsFiles | undefined {
  if (config.tlsIssuer === undefined) return undefined;
  const files = certificateFiles(config.pki.dir);
  return {
    peerCaFile: files.peerCaFile,
    clientCaFile: files.clientCaFile,
    peer: files.cert.peer,
    server: files.cert.server,
    migrating: config.tlsMode === 'migrating',
  };
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
    etcd: etcdClientOptions(config),
  };
}

function snapshotStore(ctx: Context): S3SnapshotStore {
  return new S3SnapshotStore(ctx.s3, ctx.config.bucket);
}

/**
 * The release of the etcd binary this instance runs, refused with a clear message when the agent does not
 * support it (3.4 and older); a release newer than any this project was tested on is started, with a warning.
 */
async function localEtcdVersion(binary: string, log: Log): Promise<EtcdVersion> {
  const version = await toolVersion(binary, ['--version']);
  const check = checkLocalVersion(version);
  if (!check.ok) throw new ConfigError(check.detail);
  if (check.reason === 'newer-than-tested') log.warn('etcd is newer than any version etcd-aws was tested on', { etcdVersion: formatVersion(version) });
  return version;
}

function bootstrapDeps(ctx: Context, log: Log, etcdVersion: EtcdVersion, restorer?: EtcdRestoreTool): BootstrapDeps {
  const { config } = ctx;
  return {
    etcdVersion,
    seedData: (target) => {
      if (!restorer) throw new ConfigError('no restore tool available');
      return seedFromBackups(target, {
        store: snapshotStore(ctx),
        prefix: config.prefix,
        groupName: ctx.groupName,
        restorer,
        dataDir: config.dataDir,
        allowEmptyStart: config.allowEmptyStart,
        bumpRevision: config.bumpRevision,
        // About half a minute of S3 or disk trouble before the agent gives up and starts again (the seed
        // lease is renewed meanwhile).
        retries: { count: 4, initialDelayMs: 2_000, maxDelayMs: 16_000 },
        log,
      });
    },
    inventory: ctx.inventory,
    openMembership: (endpoints) => new Etcd3Cluster(endpoints, ctx.etcd),
    seeds: new S3SeedCoordinator(ctx.s3, config.bucket, config.prefix, ctx.groupName),
    localData: () => readLocalMember(config.dataDir),
    setAsideLocalData: () => setAsideDataDir(config.dataDir, new Date()),
    now: () => Date.now(),
    sleep: (ms) => sleep(ms),
    log,
    clientPort: config.clientPort,
    peerPort: config.peerPort,
    scheme: config.scheme,
    timing: config.timing,
  };
}

async function discover(config: AgentConfig, log: Log): Promise<number> {
  const ctx = await context(config);
  const view = await discoverCluster(
    ctx.groupName,
    { inventory: ctx.inventory, openCluster: (e) => new Etcd3Cluster(e, ctx.etcd), clientPort: config.clientPort, scheme: config.scheme, log },
    config.endpoints,
  );
  process.stdout.write(`${JSON.stringify({ identity: ctx.identity, ...view }, null, 2)}\n`);
  return 0;
}

async function plan(config: AgentConfig, log: Log): Promise<number> {
  const etcdVersion = await localEtcdVersion(await findEtcdBinary(config.binDir), log);
  const ctx = await context(config);
  const observation = await observe(ctx.self, ctx.groupName, bootstrapDeps(ctx, log, etcdVersion));
  const launch = previewLaunch(ctx.self, ctx.groupName, observation, config.peerPort, config.scheme);
  const env = launch
    ? etcdEnvironment({ self: ctx.self, dataDir: config.dataDir, clientPort: config.clientPort, peerPort: config.peerPort, metricsPort: config.metricsPort, launch, space: config.space, inherited: process.env, tls: etcdTlsFiles(config) })
    : undefined;
  process.stdout.write(
    `${JSON.stringify({ instanceId: ctx.self.instanceId, groupName: ctx.groupName, etcdVersion: formatVersion(etcdVersion), decision: observation.plan, local: observation.local, probe: observation.probe.kind, etcdEnvironment: env }, null, 2)}\n`,
  );
  return 0;
}

/** The instance's own lifecycle calls (launching hook, health, the rolling update's signal). */
function launchDeps(ctx: Context, log: Log, stopped: () => boolean): LaunchDeps {
  const { config } = ctx;
  const clients = { region: ctx.identity.region };
  const selfUrl = `${config.scheme}://${ctx.self.privateIp}:${config.clientPort}`;
  return {
    instanceId: ctx.self.instanceId,
    selfUrl,
    launchedAt: undefined,
    lifecycle: new AwsInstanceLifecycle(new AutoScalingClient(clients), ctx.groupName, config.launch.hookName),
    signals: config.stack ? new CloudFormationStackSignals(new CloudFormationClient(clients), config.stack.name, config.stack.resource) : NO_STACK_SIGNALS,
    openLocal: () => new Etcd3Cluster([selfUrl], ctx.etcd),
    removeOwnMember: async () => {
      // The own etcd knows whether it votes, even when the peers cannot be asked: a voter is never removed.
      const local = new Etcd3Cluster([selfUrl], ctx.etcd);
      const ownStatus = await local.status(selfUrl).catch(() => undefined);
      local.close();
      if (ownStatus && !ownStatus.isLearner) return 'voter';
      // A learner (or none): removing it cannot cost the cluster its quorum. Best effort: a learner left
      // behind is removed by the next joiner, as a member whose instance left the group.
      try {
        const instances = await ctx.inventory.instancesOf(ctx.groupName);
        const peers = clientUrls(runningPeers(instances).filter((i) => i.instanceId !== ctx.self.instanceId), config.clientPort, config.scheme);
        if (peers.length === 0) return 'none';
        const etcd = new Etcd3Cluster(peers, ctx.etcd);
        try {
          const { members } = await etcd.listMembers();
          const own = memberOfInstance(members, ctx.self);
          if (own && !own.member.isLearner) return 'voter';
          if (!own) return 'none';
          const result = await etcd.remove(own.member.id);
          log.info('removed the own learner before abandoning the launch', { memberId: hexMemberId(own.member.id), result });
          return 'removed-learner';
        } finally {
          etcd.close();
        }
      } catch (error) {
        log.warn('could not remove the own learner before abandoning the launch', { error: describeError(error) });
        return 'none';
      }
    },
    othersHoldQuorum: async () => {
      const instances = await ctx.inventory.instancesOf(ctx.groupName);
      const peers = clientUrls(runningPeers(instances).filter((i) => i.instanceId !== ctx.self.instanceId), config.clientPort, config.scheme);
      if (peers.length === 0) return false;
      const etcd = new Etcd3Cluster(peers, ctx.etcd);
      try {
        const probe = await etcd.probe();
        return probe.kind === 'live' && othersHoldQuorum(probe, ctx.self);
      } finally {
        etcd.close();
      }
    },
    now: () => Date.now(),
    sleep: (ms) => sleep(ms),
    log,
    pollMs: config.timing.pollMs,
    heartbeatMs: config.launch.heartbeatMs,
    timeoutMs: config.launch.timeoutMs,
    stopped,
  };
}

/** Tells Auto Scaling what a failure that ends this run means (see respondToFailure); never throws. */
async function reportFailure(error: unknown, deps: LaunchDeps, log: Log): Promise<void> {
  const response = respondToFailure(error);
  try {
    if (response.kind === 'unhealthy') await reportHealth(response.verdict, deps);
    else if (response.kind === 'abandon-launch') await abandonLaunch(deps, response.reason);
  } catch (reportError) {
    log.warn('could not tell Auto Scaling why this instance stops', { response: response.kind, error: describeError(reportError) });
  }
}

async function run(config: AgentConfig, log: Log): Promise<number> {
  const ctx = await context(config);
  let exiting = false;
  /** Why this run's data must be set aside once etcd has stopped (undefined: keep it). */
  const onExit: { setAside: string | undefined } = { setAside: undefined };
  const lifecycle = launchDeps(ctx, log, () => exiting);
  const self = (await ctx.inventory.instancesOf(ctx.groupName)).find((i) => i.instanceId === ctx.self.instanceId);
  const launch: LaunchDeps = { ...lifecycle, launchedAt: self?.launchedAt };
  const history = new RunHistory(`${config.dataDir}.agent-runs.json`, log);
  // From the start, not once etcd runs: the launching hook is kept alive (and given up after its deadline)
  // while the agent still waits for a quorum, a lease or a learner slot.
  const launched = finishLaunch(launch).catch((error: unknown) => {
    log.error('launch completion stopped', { error: describeError(error) });
    return undefined;
  });

  let binary: string;
  let outcome: BootstrapOutcome;
  try {
    // Preflight: fail before changing anything.
    binary = await findEtcdBinary(config.binDir);
    const etcdVersion = await localEtcdVersion(binary, log);
    const restorer = await EtcdRestoreTool.find(config.binDir, { bumpRevision: config.bumpRevision });
    await assertDataDirWritable(config.dataDir);
    if (config.tlsIssuer !== undefined) await ensureNodeCertificates(config, ctx.identity, log);
    if (interruptedFirstStart(await readLocalMember(config.dataDir), await history.runs())) {
      const movedTo = await setAsideDataDir(config.dataDir, new Date());
      await history.reset();
      log.warn('set aside the data dir of a first start that failed before etcd wrote its WAL; starting over', { movedTo });
    }
    const verdict = crashLoopVerdict(await history.runs(), { ...DEFAULT_CRASH_LOOP, failedRuns: config.crashLoopRuns });
    if (verdict.kind === 'unhealthy') {
      throw new BootstrapRefusedError(`not starting etcd again: ${verdict.detail}; a new instance (a new volume) is the cure`, 'etcd-crash-loop');
    }
    log.info('starting', { instanceId: ctx.self.instanceId, privateIp: ctx.self.privateIp, groupName: ctx.groupName, etcdVersion: formatVersion(etcdVersion), lifecycleState: self?.lifecycleState });
    const deps = bootstrapDeps(ctx, log, etcdVersion, restorer);
    outcome = await bootstrap(ctx.self, ctx.groupName, {
      ...deps,
      // Failures of etcd on the data set aside say nothing about the member that starts from scratch.
      setAsideLocalData: async () => {
        const movedTo = await deps.setAsideLocalData();
        await history.reset();
        return movedTo;
      },
    });
  } catch (error) {
    exiting = true;
    await reportFailure(error, launch, log);
    throw error;
  }
  if (outcome.seeded) log.info('seeded the new cluster', { ...outcome.seeded });
  const env = etcdEnvironment({
    self: ctx.self,
    dataDir: config.dataDir,
    clientPort: config.clientPort,
    peerPort: config.peerPort,
    metricsPort: config.metricsPort,
    launch: outcome.launch,
    space: config.space,
    inherited: process.env,
    tls: etcdTlsFiles(config),
  });
  log.info('starting etcd', {
    decision: outcome.plan.kind,
    reason: outcome.plan.reason,
    state: outcome.launch.state,
    initialCluster: env.ETCD_INITIAL_CLUSTER,
    quotaBytes: config.space.quotaBytes,
    autoCompaction: config.space.compaction.retention === '0' ? 'off' : `${config.space.compaction.mode} ${config.space.compaction.retention}`,
  });
  // A join, or a new empty cluster: etcd starts on an empty data dir (what interruptedFirstStart looks for).
  const run = await history.started(Date.now(), { fromScratch: outcome.plan.kind === 'join' || outcome.seeded?.kind === 'empty' });
  const supervised: SupervisedEtcd = superviseEtcd(binary, env, log, { stopTimeoutMs: ETCD_STOP_TIMEOUT_MS });
  const selfUrl = launch.selfUrl;
  const stopped = () => supervised.stopped();

  // Remember that this start served (answered Status), so it is no failed start whatever becomes of it.
  void (async () => {
    while (!stopped()) {
      const local = new Etcd3Cluster([selfUrl], ctx.etcd);
      const answered = await local.status(selfUrl).then(() => true, () => false);
      local.close();
      if (answered) return run.served(Date.now());
      await sleep(config.timing.pollMs);
    }
  })();
  if (config.tlsIssuer !== undefined) {
    // etcd reads its certificate files on every handshake: a renewal (a new generation behind `current`)
    // reaches it, and the agent's own clients, without a restart.
    void (async () => {
      while (!stopped()) {
        await sleep(nextCertificateCheckMs(installedValidity(config.pki.dir), Date.now(), CERTIFICATE_CHECK_MS));
        if (stopped()) return;
        await ensureNodeCertificates(config, ctx.identity, log).catch((error: unknown) => {
          log.error('could not renew the certificates; trying again later', { error: describeError(error) });
        });
      }
    })();
  }
  if (config.scheme === 'https') {
    // Authentication on, once the cluster serves (a new cluster, one restored from a backup taken without it,
    // or one migrated to TLS once no member launched before `on` is left).
    void (async () => {
      let lastReason = '';
      while (!stopped()) {
        const instances = await ctx.inventory.instancesOf(ctx.groupName).catch(() => []);
        const peers = clientUrls(activePeers(instances).filter((i) => i.instanceId !== ctx.self.instanceId), config.clientPort, config.scheme);
        const etcd = new Etcd3Cluster([selfUrl, ...peers], ctx.etcd);
        try {
          const result = await ensureAuthentication(etcd, log);
          if (typeof result === 'string') return;
          const reason = `members launched before TLS: ${result.waiting.join(', ')}`;
          if (reason !== lastReason) log.info('etcd authentication waits until every member runs with TLS', { reason: 'members-without-tls', members: result.waiting });
          lastReason = reason;
        } catch (error) {
          const detail = describeError(error);
          if (detail !== lastReason) log.info('cannot check etcd authentication yet; retrying', { error: detail });
          lastReason = detail;
        } finally {
          etcd.close();
        }
        await sleep(config.timing.pollMs);
      }
    })();
  }
  const wonLease = outcome.lease;
  if (wonLease !== undefined) {
    // Keep the seed lease until the new cluster serves, so no one takes it over while etcd starts. Losing it
    // before then means another agent may be founding: this etcd stops, and its data is set aside.
    const seeds = new S3SeedCoordinator(ctx.s3, config.bucket, config.prefix, ctx.groupName);
    void (async () => {
      let lease: SeedLease = wonLease;
      while (!stopped()) {
        const local = new Etcd3Cluster([selfUrl], ctx.etcd);
        const serving = await local.status(selfUrl).then((s) => s.leaderId !== '0', () => false);
        local.close();
        if (serving) return;
        await sleep(Math.max(config.timing.leaseMs / 3, 100));
        const held = lease;
        const renewed = await seeds.writeLease(ctx.self.instanceId, Date.now() + config.timing.leaseMs, held.etag).catch((error: unknown) => {
          log.warn('seed lease renewal failed; retrying', { error: describeError(error) });
          return held;
        });
        if (renewed === undefined || Date.now() >= held.expiresAt) {
          log.error('lost the seed lease before the new cluster served; stopping etcd and setting its data aside', { holderWas: held.holder });
          onExit.setAside = 'a cluster founded without its lease';
          process.kill(process.pid, 'SIGTERM');
          return;
        }
        lease = renewed;
      }
    })();
  }
  if (outcome.learnerId !== undefined) {
    const learnerId = outcome.learnerId;
    void (async () => {
      const instances = await ctx.inventory.instancesOf(ctx.groupName);
      const peers = clientUrls(activePeers(instances).filter((i) => i.instanceId !== ctx.self.instanceId), config.clientPort, config.scheme);
      await promoteWhenReady(learnerId, () => new Etcd3Cluster(peers.length > 0 ? peers : [selfUrl], ctx.etcd), {
        sleep: (ms) => sleep(ms),
        log,
        stopped,
      });
    })().catch((error: unknown) => log.error('promotion stopped', { error: describeError(error) }));
  }
  const seeds = new S3SeedCoordinator(ctx.s3, config.bucket, config.prefix, ctx.groupName);
  void publishServingState({
    selfInstanceId: ctx.self.instanceId,
    selfUrl,
    openCluster: (endpoints) => new Etcd3Cluster(endpoints, ctx.etcd),
    seeds,
    now: () => Date.now(),
    sleep: (ms) => sleep(ms),
    intervalMs: Math.max(config.timing.freshMs / 3, 250),
    stopped,
    log,
  }).catch((error: unknown) => log.error('registration heartbeat stopped', { error: describeError(error) }));
  if (!config.quorumRecovery) {
    log.info('automatic recovery from a permanent majority loss is off (ETCD_AWS_QUORUM_RECOVERY=off)');
  } else {
    void recoverFromQuorumLoss({
      selfUrl,
      selfInstanceId: ctx.self.instanceId,
      openCluster: (endpoints) => new Etcd3Cluster(endpoints, ctx.etcd),
      inventory: ctx.inventory,
      // The flag goes to this one process only: a later start (by this agent or after a restart) decides anew.
      forceNewCluster: () => supervised.restart(forceNewClusterEnvironment(env)),
      restoreInstead: () => {
        onExit.setAside = 'quorum recovery: the group restores its newest backup instead (a lone survivor behind it, or a learner whose voters are all gone)';
        process.kill(process.pid, 'SIGTERM');
        return Promise.resolve();
      },
      registrations: () => seeds.registrations(),
      freshMs: config.timing.freshMs,
      newestBackup: () => newestBackupOf(ctx),
      now: () => Date.now(),
      sleep: (ms) => sleep(ms),
      log,
      graceMs: config.quorumLossGraceMs,
      pollMs: config.timing.pollMs,
      stopped,
    }).catch((error: unknown) => log.error('quorum loss watch stopped', { error: describeError(error) }));
  }
  const code = await supervised.exited;
  exiting = true;
  await run.exited(Date.now(), code, supervised.stoppedOnPurpose());
  const setAside = onExit.setAside;
  if (setAside !== undefined) {
    log.warn('set aside the data of this member', { reason: setAside, movedTo: await setAsideDataDir(config.dataDir, new Date()) });
    await history.reset();
  }
  await launched;
  return setAside !== undefined ? 1 : code;
}

/** The group's newest valid backup: its key, the cluster it is of, and the revision before it was taken. */
async function newestBackupOf(ctx: Context): Promise<{ key: string; clusterId: string; revision: string } | undefined> {
  const store = snapshotStore(ctx);
  const newest = pairBackups(await store.list(snapshotFolder(ctx.config.prefix, ctx.groupName))).backups[0];
  if (!newest) return undefined;
  const meta = await store.readMetadata(newest.metadataKey);
  return { key: newest.snapshotKey, clusterId: meta.clusterId, revision: meta.revision.before };
}

async function listBackups(config: AgentConfig): Promise<number> {
  const ctx = await context(config);
  const { backups } = pairBackups(await snapshotStore(ctx).list(snapshotFolder(config.prefix, ctx.groupName)));
  const rows = backups.map((b) => ({ key: b.snapshotKey, createdAt: new Date(b.createdAt).toISOString(), revision: b.revision.toString() }));
  process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  return 0;
}

async function restore(config: AgentConfig, log: Log, options: { key?: string; at?: string }): Promise<number> {
  if ((options.key === undefined) === (options.at === undefined)) {
    throw new ConfigError('restore needs exactly one of --key <snapshot key> or --at <ISO time>');
  }
  const at = options.at === undefined ? undefined : Date.parse(options.at);
  if (at !== undefined && Number.isNaN(at)) throw new ConfigError(`--at ${options.at ?? ''} is not a time; use ISO 8601, e.g. 2026-11-26T12:00:00Z`);
  const local = await readLocalMember(config.dataDir);
  if (local.kind !== 'none') {
    throw new ConfigError(`ETCD_DATA_DIR ${config.dataDir} already holds etcd data; stop the agent and move the dir away first (nothing was changed)`);
  }
  const restorer = await EtcdRestoreTool.find(config.binDir, { bumpRevision: config.bumpRevision });
  await assertDataDirWritable(config.dataDir);
  const ctx = await context(config);
  const { backups } = pairBackups(await snapshotStore(ctx).list(snapshotFolder(config.prefix, ctx.groupName)));
  const chosen = options.key !== undefined ? backups.find((b) => b.snapshotKey === options.key) : backups.find((b) => b.createdAt <= (at ?? 0));
  if (!chosen) {
    throw new ConfigError(
      options.key !== undefined
        ? `no valid backup with key ${options.key}; list them with: node-agent backups`
        : `no valid backup taken at or before ${options.at ?? ''}; list them with: node-agent backups`,
    );
  }
  const peerUrl = `${config.scheme}://${ctx.self.privateIp}:${config.peerPort}`;
  const { revision } = await restoreBackup(chosen, { name: ctx.self.instanceId, peerUrl, token: `${ctx.groupName}-${randomUUID()}` }, {
    store: snapshotStore(ctx),
    restorer,
    dataDir: config.dataDir,
    bumpRevision: config.bumpRevision,
  });
  log.info('restored backup by hand', { key: chosen.snapshotKey, revision, dataDir: config.dataDir });
  process.stdout.write(`${JSON.stringify({ restored: chosen.snapshotKey, revision, dataDir: config.dataDir })}\n`);
  return 0;
}

/** How often a running agent checks whether its certificates are due for renewal (at a third of their lifetime left). */
const CERTIFICATE_CHECK_MS = 600_000;

/**
 * Makes sure this node holds valid certificates (renewing them when due), asking the issuer with the
 * instance profile's credentials. A refusal is final (CertificateRefusedError, with the issuer's reason);
 * anything else is retried for about half a minute before the error ends the run.
 */
/** The issuer as this node asks it: with its instance profile's credentials, read from IMDS. */
function nodeIssuer(config: AgentConfig, identity: InstanceIdentity, command: string): IssuerClientDeps {
  const functionName = config.pki.issuerFunction;
  if (!functionName) throw new ConfigError(`ETCD_AWS_ISSUER_FUNCTION is required for ${command} (the certificate issuer function; the stack sets it)`);
  const imds = new ImdsIdentitySource();
  return {
    lambda: new LambdaClient({ region: identity.region }),
    functionName,
    region: identity.region,
    stsEndpoint: stsEndpoint(identity.region),
    credentials: () => imds.instanceProfileCredentials(),
  };
}

async function ensureNodeCertificates(config: AgentConfig, identity: InstanceIdentity, log: Log): Promise<Awaited<ReturnType<typeof ensureCertificates>>> {
  const issuer = nodeIssuer(config, identity, 'certificates');
  // The server certificate also names the load balancer, so clients may verify it through the load balancer.
  const names = (kind: CertificateKind) => ({ ips: kind === 'client' ? [] : [identity.privateIp], dnsNames: kind === 'server' ? config.pki.serverDnsNames : [] });
  const policy = retry(handleWhen((error) => !(error instanceof CertificateRefusedError)), {
    maxAttempts: 4,
    backoff: new ExponentialBackoff({ initialDelay: 1000, maxDelay: 16_000 }),
  });
  const retried = policy.onRetry(({ delay, ...outcome }) => {
    log.warn('could not get certificates from the issuer; retrying', { delayMs: delay, error: 'error' in outcome ? describeError(outcome.error) : undefined });
  });
  try {
    // Retried per request, inside ensureCertificates: its fallback to the certificates held (while valid) comes
    // only after the retries, so a short outage of the issuer does not leave a node on nearly expired ones.
    return await ensureCertificates(config.pki.dir, (kind) => policy.execute(() => requestCertificate(issuer, kind, names(kind))), { now: () => Date.now(), log });
  } finally {
    retried.dispose();
  }
}

async function certificates(config: AgentConfig, log: Log): Promise<number> {
  const identity = await new ImdsIdentitySource().identity();
  const { files, renewed } = await ensureNodeCertificates(config, identity, log);
  process.stdout.write(`${JSON.stringify({ renewed, ...files })}\n`);
  return 0;
}

async function userCertificate(config: AgentConfig, log: Log, csrFile: string | undefined): Promise<number> {
  if (csrFile === undefined) throw new ConfigError('user-certificate needs --csr <file>: a PEM CSR whose CN is the etcd user, e.g. made with openssl (README, "Users and their certificates")');
  let csrPem: string;
  try {
    csrPem = readFileSync(csrFile, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read the CSR ${csrFile}: ${describeError(error)}`);
  }
  const identity = await new ImdsIdentitySource().identity();
  const issued = await requestCertificateForCsr(nodeIssuer(config, identity, 'user-certificate'), 'user', csrPem);
  log.info('user certificate issued', { notAfter: new Date(issued.notAfter).toISOString() });
  process.stdout.write(issued.certificatePem.endsWith('\n') ? issued.certificatePem : `${issued.certificatePem}\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' }, key: { type: 'string' }, at: { type: 'string' }, csr: { type: 'string' } },
  });
  const command = positionals[0];
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const commands: Record<string, (config: AgentConfig, log: Log) => Promise<number>> = {
    run,
    plan,
    discover,
    backups: (config) => listBackups(config),
    certificates,
    'user-certificate': (config, log) => userCertificate(config, log, values.csr),
    restore: (config, log) => restore(config, log, { key: values.key, at: values.at }),
  };
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
