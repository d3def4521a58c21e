import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { hexMemberId } from '../core/domain/members.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import type { BackupSummary } from '../core/use-cases/backup.js';
import { inspectCluster, type ClusterSnapshot } from '../testbed/agents.js';
import { waitFor } from '../testbed/wait.js';
import { VersionWatch } from './versions.js';
import { SequenceWriter, type AckedWrite } from './writer.js';
import type { Sandbox, SandboxOptions } from './world.js';
import { clientUrlOf, etcd3Credentials, etcdClusterTls } from '../testbed/pki.js';

type Uploaded = Extract<BackupSummary, { status: 'uploaded' }>;

/** What a scenario did, for the checks that follow it. */
interface Act {
  /** When the fault began: convergence is measured from here. */
  readonly faultAt: number;
  /**
   * When the fault was complete (every process killed): a write acknowledged before this was acknowledged
   * by the old cluster. Defaults to faultAt.
   */
  readonly faultEndAt?: number;
  /** A restore from backup is expected: the cluster is new, restored from this backup. */
  readonly restoreFrom?: Uploaded;
  /** A backup the restore must skip (corrupt-latest-backup). */
  readonly mustSkip?: string;
  /** Acknowledged writes newer than this may be lost (a majority lost at once; see kill-majority). */
  readonly mayLoseAckedAfter?: number;
  /** Invariants of the scenario's own that did not hold, in words. */
  readonly violations?: readonly string[];
  /** Invariants of the scenario's own, checked after convergence: what did not hold, in words. */
  readonly afterwards?: () => readonly string[];
  /** upgrade: the releases rolled through and how the cluster version followed. */
  readonly etcd?: ScenarioSummary['etcd'];
  /** The group's instances must be the same ones after the scenario (nothing was replaced). */
  readonly sameInstances?: boolean;
}

interface Context {
  readonly sandbox: Sandbox;
  readonly writer: SequenceWriter;
  readonly say: (message: string) => void;
  /** Runs a long step with progress output. */
  readonly step: <T>(name: string, work: () => Promise<T>) => Promise<T>;
}

export interface Scenario {
  readonly description: string;
  /** Instances the group starts with. */
  readonly size: number;
  /** The backup schedule runs during the scenario (off where the scenario takes its backups itself). */
  readonly schedule: boolean;
  /** The etcd release the instances start with ("3.5"); the test bed's selected one when absent. */
  readonly etcdVersion?: string;
  /** The group's health check type; the stack's (EC2) when absent. */
  readonly healthCheckType?: 'EC2' | 'ELB';
  /** Stack settings for the agents and the functions (e.g. a small space quota). */
  readonly stackEnv?: Readonly<Record<string, string>>;
  /** The stack's TLS setting at the start; `on` (the stack's default) when absent. */
  readonly tls?: SandboxOptions['tls'];
  act(ctx: Context): Promise<Act>;
}

export const CONVERGE_MS = 180_000;

/** How long long-quorum-loss keeps two of three members frozen. */
export const LONG_QUORUM_LOSS_MS = 180_000;

/**
 * Holds a fault for `ms` while watching the group: returns the instances that left it meanwhile (which a
 * health check or a replacement would have taken away).
 */
async function holdFault(ctx: Context, ms: number, label: string): Promise<string[]> {
  const before = new Set(ctx.sandbox.instances().map((i) => i.instanceId));
  const gone = new Set<string>();
  const until = Date.now() + ms;
  await ctx.step(label, () =>
    waitFor(
      label,
      () => {
        for (const id of before) if (!ctx.sandbox.instances().some((i) => i.instanceId === id)) gone.add(id);
        return Date.now() >= until;
      },
      { timeoutMs: ms + 10_000, intervalMs: 500 },
    ),
  );
  return [...gone];
}

/** How long partition-minority-long may take to replace the cut-off members (each: cut-off grace, then a replacement). */
const PARTITION_LONG_MS = 240_000;

/**
 * What must hold of members that were cut off: none of them forced a cluster of its own, and (when nothing
 * else replaced them first) reconcile marked their instances unhealthy.
 */
function partitionViolations(ctx: Context, cutOff: readonly string[], options: { mustBeMarked: boolean }): string[] {
  const violations: string[] = [];
  for (const id of cutOff) {
    if (ctx.sandbox.agentSaid(id, 'forcing a new cluster from this member')) violations.push(`${id} forced a new cluster while cut off`);
    const marked = ctx.sandbox.shim.calls.some((c) => c.action === 'SetInstanceHealth' && c.params.InstanceId === id && c.params.HealthStatus === 'Unhealthy');
    if (options.mustBeMarked && !marked) violations.push(`${id} was never marked unhealthy although it was cut off from the quorum`);
  }
  return violations;
}

/** The minor releases the upgrade scenario rolls through: every supported one, oldest first. */
const UPGRADE_PATH = ['3.5', '3.6', '3.7'] as const;

/**
 * slow-learner-rolling-replace: the data a learner must fetch (bytes) and the peer bandwidth of every new
 * instance (kbit/s): about 30 s of catch-up each, far longer than the rollout takes to reach the last voter,
 * well inside the launch deadline.
 */
const SLOW_LEARNER = {
  bulkBytes: 2 * 1024 * 1024,
  valueBytes: 64 * 1024,
  kbit: 512,
  /** Longer than a leader change or two; a lost quorum lasts until a learner has caught up. */
  maxNoQuorumMs: 10_000,
} as const;

/** Writes `bytes` of incompressible values under a prefix of their own (what a learner must catch up on). */
async function bulkData(endpoints: readonly string[], bytes: number, valueBytes: number): Promise<void> {
  const client = new Etcd3({ hosts: [...endpoints], ...etcd3Credentials() });
  try {
    for (let n = 0; n * valueBytes < bytes; n += 1) await client.put(`bulk/${String(n).padStart(4, '0')}`).value(randomBytes(valueBytes));
  } finally {
    client.close();
  }
}

/**
 * Watches whether the cluster has a quorum, through every instance that still runs (those waiting in
 * Terminating:Wait too, which the load balancer, and the writer, no longer reach): the longest stretch
 * without one, while it runs.
 */
function watchQuorum(ctx: Context): { stop: () => Promise<number> } {
  const state = { running: true };
  let lastAt = Date.now();
  let longest = 0;
  const loop = (async () => {
    while (state.running) {
      const endpoints = ctx.sandbox.fleet
        .list()
        .filter((n) => !ctx.sandbox.ended(n.instance.instanceId))
        .map((n) => clientUrlOf(n.instance.privateIp));
      const cluster = new Etcd3Cluster(endpoints, { dialTimeoutMs: 1000, callTimeoutMs: 2000, ...etcdClusterTls() });
      const ok = await cluster.hasQuorum().finally(() => cluster.close());
      const now = Date.now();
      if (ok) lastAt = now;
      longest = Math.max(longest, now - lastAt);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  return {
    stop: async () => {
      state.running = false;
      await loop;
      return longest;
    },
  };
}

/** Waits until the instance is listed as a member (a learner, or already voting). */
async function listedAsMember(ctx: Context, instanceId: string): Promise<void> {
  await waitFor(
    `${instanceId} to be listed as a member`,
    async () => {
      const members = await inspectCluster(ctx.sandbox.endpoints()).then((c) => c.members).catch(() => []);
      return members.some((m) => m.name === instanceId);
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
}

async function writesAcknowledged(writer: SequenceWriter, more: number, what: string): Promise<void> {
  const target = writer.acknowledged.length + more;
  await waitFor(`${more} more acknowledged writes ${what} (last error: ${writer.latestError || 'none'})`, () => writer.acknowledged.length >= target, {
    timeoutMs: 60_000,
    intervalMs: 50,
  });
}

async function uploadedBackup(ctx: Context, label: string): Promise<Uploaded> {
  const result = await ctx.step(`backup ${label}`, () => ctx.sandbox.backup());
  if (result.status !== 'uploaded') throw new Error(`backup ${label} was skipped (${result.reason}); the writer should have changed the revision`);
  return result;
}

/** Flips one byte in the middle of a stored snapshot: its trailer checksum no longer matches. */
export async function corruptSnapshot(bucket: string, key: string): Promise<void> {
  const s3 = new S3Client({ forcePathStyle: true });
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await object.Body!.transformToByteArray());
  const at = Math.floor(bytes.length / 2);
  bytes[at] = (bytes[at]! ^ 0xff) & 0xff;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
}

/** The instance whose etcd leads, and another one. */
async function leaderAndFollower(ctx: Context): Promise<{ leader: string; follower: string }> {
  const leader = await waitFor('a leader', () => ctx.sandbox.leader(), { timeoutMs: 30_000, intervalMs: 250 });
  const follower = ctx.sandbox.instances().find((i) => i.instanceId !== leader)?.instanceId;
  if (follower === undefined) throw new Error('the group has no instance besides the leader');
  return { leader, follower };
}

async function totalLoss(ctx: Context): Promise<{ faultAt: number; faultEndAt: number }> {
  const all = ctx.sandbox.instances().map((i) => i.instanceId);
  const faultAt = Date.now();
  await ctx.sandbox.kill(all);
  const faultEndAt = Date.now();
  ctx.say(`every instance and its disk is gone; the group launches ${all.length} new, empty ones`);
  return { faultAt, faultEndAt };
}

/**
 * enable-tls: the longest the cluster may be without quorum while every member is replaced twice: a leader
 * change or two, never a lost quorum (each successor votes before its predecessor goes).
 */
const MIGRATION_MAX_NO_QUORUM_MS = 10_000;

/** fill-quota's space quota: small, so a few dozen overwrites fill it. */
export const FILL_QUOTA_BYTES = 32 * 1024 ** 2;

export const SCENARIOS: Record<string, Scenario> = {
  'cold-start': {
    description: 'three empty instances elect a founder, which founds the cluster; the others join as learners and are promoted',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      await writesAcknowledged(ctx.writer, 20, 'on the new cluster');
      return { faultAt: Date.now() };
    },
  },
  'replace-one': {
    description: 'Auto Scaling terminates one instance: the hook removes its member, the replacement joins',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const victim = ctx.sandbox.instances()[0]!.instanceId;
      const at = Date.now();
      await ctx.sandbox.terminate(victim);
      return { faultAt: at };
    },
  },
  'rolling-replace': {
    description: 'every instance is replaced, one at a time, each after the cluster converged again (an instance refresh)',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const originals = ctx.sandbox.instances().map((i) => i.instanceId);
      const at = Date.now();
      for (const [n, victim] of originals.entries()) {
        await ctx.sandbox.terminate(victim);
        if (n < originals.length - 1) await ctx.step(`convergence after replacing ${victim}`, () => ctx.sandbox.converge(CONVERGE_MS));
      }
      return { faultAt: at };
    },
  },
  'slow-learner-rolling-replace': {
    description:
      "every instance is replaced, the next as soon as the previous one left (its successor not yet voting), while every new instance's peer link is slow: the last original voter waits, its hook heartbeating, until a learner has caught up and is promoted; never only learners left, never a quorum lost",
    // etcd 3.5 promoted the slow learners here at once (measured: added and promoted within 0.3 s at 512 kbit/s),
    // so the last voter never waits on it; 3.6, the default, refuses until the learner has caught up.
    etcdVersion: '3.6',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      await ctx.step(`${SLOW_LEARNER.bulkBytes / 1024 / 1024} MiB of data for the learners to catch up on`, () =>
        bulkData(ctx.sandbox.endpoints(), SLOW_LEARNER.bulkBytes, SLOW_LEARNER.valueBytes),
      );
      ctx.sandbox.slowNewInstances(SLOW_LEARNER.kbit);
      const originals = ctx.sandbox.instances().map((i) => i.instanceId);
      const at = Date.now();
      const quorum = watchQuorum(ctx);
      // The first successor must be a lagging learner before the others go; etcd admits one learner at a
      // time (--max-learners), so the later successors wait to join: the last original voter is left with
      // a learner that cannot vote yet, which its hook must promote before letting it go.
      const [first, ...rest] = originals;
      const before = new Set(ctx.sandbox.instances().map((i) => i.instanceId));
      await ctx.sandbox.terminate(first!);
      const successor = await waitFor('its successor to launch', () => ctx.sandbox.instances().find((i) => !before.has(i.instanceId))?.instanceId, {
        timeoutMs: 30_000,
        intervalMs: 100,
      });
      await ctx.step(`${successor} (successor of ${first!}) listed as a learner`, () => listedAsMember(ctx, successor));
      for (const victim of rest) {
        await ctx.sandbox.terminate(victim);
        if (victim !== rest.at(-1)) {
          await ctx.step(`${victim} terminated after its hook`, () => waitFor(`${victim} to be terminated`, () => ctx.sandbox.ended(victim), { timeoutMs: 60_000, intervalMs: 100 }));
        }
      }
      await ctx.step('the originals terminated', () =>
        waitFor('every original instance to be terminated after its hook', () => originals.every((id) => ctx.sandbox.ended(id)), { timeoutMs: CONVERGE_MS, intervalMs: 250 }),
      );
      ctx.sandbox.clearSlowLinks();
      const noQuorumMs = await quorum.stop();
      ctx.say(`longest stretch without a quorum, through every running instance: ${(noQuorumMs / 1000).toFixed(1)} s`);
      const violations: string[] = [];
      if (ctx.sandbox.promoteFirst.waited === 0) violations.push('the last voter never had to wait for a learner: the learners were not slow enough for the scenario to test anything');
      if (ctx.sandbox.promoteFirst.promoted === 0) violations.push('no learner was promoted before the last voter went');
      if (noQuorumMs > SLOW_LEARNER.maxNoQuorumMs) violations.push(`the cluster had no quorum for ${(noQuorumMs / 1000).toFixed(1)} s`);
      return { faultAt: at, violations };
    },
  },
  'scale-out': {
    description: 'the desired capacity goes from 3 to 5: two new instances join as learners and are promoted',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const at = Date.now();
      await ctx.sandbox.setCapacity(5);
      return { faultAt: at };
    },
  },
  'scale-in': {
    description: 'the desired capacity goes from 5 to 3: the hook removes two members before their instances go',
    size: 5,
    schedule: true,
    act: async (ctx) => {
      const at = Date.now();
      await ctx.sandbox.setCapacity(3);
      return { faultAt: at };
    },
  },
  upgrade: {
    description:
      'a rolling upgrade of etcd as a stack update runs it: every instance replaced, one at a time, by one with the next minor release (3.5 → 3.6), then again (3.6 → 3.7); each successor votes before its predecessor goes',
    size: 3,
    schedule: true,
    etcdVersion: UPGRADE_PATH[0],
    act: async (ctx) => {
      const at = Date.now();
      const violations: string[] = [];
      const started = ctx.sandbox.launchTemplateEtcd();
      const watch = new VersionWatch(
        () => ctx.sandbox.endpoints(),
        (version, servers) => ctx.say(`the cluster version is ${version} (members run ${servers.join(', ')})`),
      );
      try {
        for (const release of UPGRADE_PATH.slice(1)) {
          const result = await ctx.step(`rolling update to etcd ${release}`, () => ctx.sandbox.update({ etcdVersion: release }));
          if (result !== 'complete') throw new Error(`the rolling update to etcd ${release} was rolled back`);
        }
        const last = UPGRADE_PATH.at(-1) as string;
        await waitFor(`the cluster version to reach ${last} once every member runs it`, () => watch.changes.at(-1)?.clusterVersion === last, {
          timeoutMs: 60_000,
          intervalMs: 250,
        }).catch((error: unknown) => violations.push((error as Error).message));
      } finally {
        await watch.stop();
      }
      violations.push(...watch.violations);
      const runs = ctx.sandbox.instances().map((i) => `${i.instanceId}=${ctx.sandbox.etcdOf(i.instanceId)}`);
      const behind = ctx.sandbox.instances().filter((i) => ctx.sandbox.etcdOf(i.instanceId) !== ctx.sandbox.launchTemplateEtcd());
      if (behind.length > 0) violations.push(`instances still on an older etcd: ${runs.join(', ')}`);
      return {
        faultAt: at,
        violations,
        etcd: {
          from: started,
          to: ctx.sandbox.launchTemplateEtcd(),
          clusterVersions: watch.changes.map((c) => ({ atMs: c.at - at, clusterVersion: c.clusterVersion, servers: c.servers })),
        },
      };
    },
  },
  'enable-tls': {
    description:
      'a running plaintext stack moves to TLS as the README says, in two stack updates: tls=migrating (every instance replaced by one with certificates, serving TLS beside plaintext), then tls=on (TLS peers; etcd authentication once no plaintext member is left); quorum holds throughout and no write is lost',
    size: 3,
    schedule: true,
    tls: 'off',
    act: async (ctx) => {
      const at = Date.now();
      const violations: string[] = [];
      const quorum = watchQuorum(ctx);
      try {
        for (const mode of ['migrating', 'on'] as const) {
          const result = await ctx.step(`stack update to tls=${mode}`, () => ctx.sandbox.moveTls(mode));
          if (result !== 'complete') throw new Error(`the rolling update to tls=${mode} was rolled back`);
        }
      } finally {
        const longest = await quorum.stop();
        if (longest > MIGRATION_MAX_NO_QUORUM_MS) violations.push(`the cluster was without quorum for ${longest} ms during the migration`);
      }
      const cluster = new Etcd3Cluster(ctx.sandbox.endpoints(), { dialTimeoutMs: 1000, callTimeoutMs: 3000, ...etcdClusterTls() });
      try {
        await ctx.step('etcd authentication on', () => waitFor('the agents to turn etcd authentication on', () => cluster.authEnabled().catch(() => false), { timeoutMs: 60_000, intervalMs: 500 }));
        const { members } = await cluster.listMembers();
        const plaintext = members.filter((m) => [...m.peerUrls, ...m.clientUrls].some((u) => !u.startsWith('https://')));
        if (plaintext.length > 0) violations.push(`members still with plaintext URLs: ${plaintext.map((m) => `${m.name} ${[...m.peerUrls, ...m.clientUrls].join(' ')}`).join('; ')}`);
      } finally {
        cluster.close();
      }
      // The first TLS member's agent found migrating members beside it and left authentication off meanwhile.
      const tlsNodes = ctx.sandbox.fleet.list().filter((n) => n.template.env?.ETCD_AWS_TLS === 'on');
      if (!tlsNodes.some((n) => ctx.sandbox.agentSaid(n.instance.instanceId, 'etcd authentication waits until every member runs with TLS'))) {
        violations.push('no agent waited for the migrating members to leave before turning authentication on');
      }
      // Plaintext is refused everywhere now.
      for (const url of ctx.sandbox.endpoints().map((e) => e.replace(/^https:/, 'http:'))) {
        const plain = new Etcd3Cluster([url], { dialTimeoutMs: 1000, callTimeoutMs: 3000 });
        const answered = await plain.status(url).then(() => true, () => false);
        plain.close();
        if (answered) violations.push(`${url} still answers plaintext`);
      }
      return { faultAt: at, violations };
    },
  },
  'long-quorum-loss': {
    description:
      'two of three instances stop answering for 3 minutes (frozen, their instances still running), then come back: the group replaces nothing (EC2 health checks), nothing is restored, the cluster resumes with every write',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const { leader, follower } = await leaderAndFollower(ctx);
      const frozen = [leader, follower];
      const at = Date.now();
      ctx.sandbox.pause(frozen);
      const gone = await holdFault(ctx, LONG_QUORUM_LOSS_MS, `${LONG_QUORUM_LOSS_MS / 1000} s without quorum`);
      ctx.sandbox.resume(frozen);
      return { faultAt: at, faultEndAt: Date.now(), sameInstances: true, violations: gone.map((id) => `${id} left the group during the quorum loss`) };
    },
  },
  'unhealthy-node': {
    description:
      "one member's etcd can no longer start (a failing disk): its agent sees the crash loop and marks the instance unhealthy; Auto Scaling replaces it through the hook; the others keep quorum throughout",
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const { follower: victim } = await leaderAndFollower(ctx);
      const at = Date.now();
      ctx.sandbox.breakEtcd(victim);
      await ctx.step(`${victim} marked unhealthy and replaced`, () =>
        waitFor(`${victim} to leave the group`, () => !ctx.sandbox.instances().some((i) => i.instanceId === victim), { timeoutMs: CONVERGE_MS, intervalMs: 250 }),
      );
      const marked = ctx.sandbox.shim.calls.some((c) => c.action === 'SetInstanceHealth' && c.params.InstanceId === victim && c.params.HealthStatus === 'Unhealthy');
      return { faultAt: at, violations: marked ? [] : [`${victim} left the group without its agent marking it unhealthy`] };
    },
  },
  'rolling-update': {
    description:
      'a stack update changes the launch template: every instance is replaced, one at a time, each only after its successor signalled that it votes; then an update with a broken agent stops at its first successor and rolls back, replacing no member',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const at = Date.now();
      const violations: string[] = [];
      const originals = ctx.sandbox.instances().map((i) => i.instanceId);
      const good = await ctx.step('rolling update to launch template 2', () => ctx.sandbox.update({ env: { ETCD_AWS_QUORUM_LOSS_GRACE_MS: '4000' } }));
      if (good !== 'complete') violations.push(`the good update ended ${good}`);
      // The update completes once it has terminated the last old instance, which then waits for its hook.
      await waitFor('the old instances to leave the group', () => !ctx.sandbox.instances().some((i) => originals.includes(i.instanceId)), {
        timeoutMs: 60_000,
        intervalMs: 250,
      }).catch(() => undefined);
      const updated = ctx.sandbox.instances().map((i) => i.instanceId);
      const kept = updated.filter((id) => originals.includes(id));
      if (kept.length > 0) violations.push(`instances of the old template still in service after the update: ${kept.join(', ')}`);
      // An agent that cannot start (a bad setting in the new template): no signal, the update must stop.
      const broken = await ctx.step('rolling update to a broken launch template 3', () => ctx.sandbox.update({ env: { ETCD_AWS_POLL_MS: 'every-now-and-then' } }));
      if (broken !== 'rolled-back') violations.push(`the broken update ended ${broken}, not rolled back`);
      const after = ctx.sandbox.instances().map((i) => i.instanceId);
      const lost = updated.filter((id) => !after.includes(id));
      if (lost.length > 0) violations.push(`the broken update replaced members it should have kept: ${lost.join(', ')}`);
      return { faultAt: at, violations };
    },
  },
  'partition-one': {
    description:
      'one member is cut off from its peers (its instance runs, reaches AWS and stays in service) while a stack update rolls: reconcile finds it cut off from the quorum for longer than the grace period, removes its member and marks it unhealthy; the update completes; the cut-off node never forces or serves a second cluster',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const { follower: isolated } = await leaderAndFollower(ctx);
      const others = ctx.sandbox.instances().map((i) => i.instanceId).filter((id) => id !== isolated);
      const at = Date.now();
      const violations: string[] = [];
      ctx.sandbox.partition([[isolated], others]);
      try {
        const result = await ctx.step('rolling update during the partition', () => ctx.sandbox.update({ env: { ETCD_AWS_QUORUM_LOSS_GRACE_MS: '3500' } }));
        if (result !== 'complete') violations.push(`the rolling update during the partition ended ${result}`);
      } finally {
        ctx.sandbox.heal();
      }
      // Here the update may replace the cut-off instance before reconcile judges it (both end its membership).
      violations.push(...partitionViolations(ctx, [isolated], { mustBeMarked: false }));
      if (ctx.sandbox.instances().some((i) => i.instanceId === isolated)) violations.push(`${isolated} is still in the group after the update`);
      return { faultAt: at, violations };
    },
  },
  'partition-minority-long': {
    description:
      'two of five members are cut off together (they reach each other and AWS) for longer than every grace period: they never force a cluster; reconcile removes and replaces them one at a time from the quorum side, which serves throughout',
    size: 5,
    schedule: true,
    act: async (ctx) => {
      const leader = await waitFor('a leader', () => ctx.sandbox.leader(), { timeoutMs: 30_000, intervalMs: 250 });
      const followers = ctx.sandbox.instances().map((i) => i.instanceId).filter((id) => id !== leader);
      const minority = followers.slice(0, 2);
      const majority = ctx.sandbox.instances().map((i) => i.instanceId).filter((id) => !minority.includes(id));
      const at = Date.now();
      ctx.sandbox.partition([minority, majority]);
      try {
        await ctx.step(`${minority.join(' and ')} replaced while cut off`, () =>
          waitFor(`${minority.join(', ')} to leave the group`, () => !ctx.sandbox.instances().some((i) => minority.includes(i.instanceId)), {
            timeoutMs: PARTITION_LONG_MS,
            intervalMs: 500,
          }),
        );
      } finally {
        ctx.sandbox.heal();
      }
      return { faultAt: at, violations: partitionViolations(ctx, minority, { mustBeMarked: true }) };
    },
  },
  'kill-leader': {
    description: "the leader's instance dies (no lifecycle hook): a new leader is elected, the replacement removes the dead member and joins",
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const leader = await waitFor('a leader', () => ctx.sandbox.leader(), { timeoutMs: 30_000, intervalMs: 250 });
      ctx.say(`the leader is ${leader}`);
      const at = Date.now();
      await ctx.sandbox.kill([leader]);
      return { faultAt: at };
    },
  },
  'kill-majority': {
    description:
      'two of three instances die at once (no lifecycle hook): the survivor has no quorum; once EC2 confirms them terminated, it restarts as a one-member cluster with its data, and the replacements join',
    size: 3,
    schedule: true,
    act: async (ctx) => {
      const { leader, follower: other } = await leaderAndFollower(ctx);
      const at = Date.now();
      await ctx.sandbox.kill([leader, other]);
      // The survivor may not yet have learned that the newest entries were committed when the majority died;
      // etcd's forced recovery keeps only what it knows to be committed. A loss is within a heartbeat or so.
      return { faultAt: at, faultEndAt: Date.now(), mayLoseAckedAfter: at - 1000 };
    },
  },
  'total-loss': {
    description: 'every instance dies with its disk: the new instances elect one agent, which restores the newest backup; the others join',
    size: 3,
    schedule: false,
    act: async (ctx) => {
      const backup = await uploadedBackup(ctx, '(the scheduled one before the loss)');
      await writesAcknowledged(ctx.writer, 20, 'after the backup (they are the RPO)');
      return { ...(await totalLoss(ctx)), restoreFrom: backup };
    },
  },
  'corrupt-latest-backup': {
    description: 'the newest backup is corrupt when every instance dies: the restore detects it and falls back to the previous one',
    size: 3,
    schedule: false,
    act: async (ctx) => {
      const previous = await uploadedBackup(ctx, 'A');
      await writesAcknowledged(ctx.writer, 20, 'between the two backups');
      const latest = await uploadedBackup(ctx, 'B');
      await corruptSnapshot(ctx.sandbox.bucket, latest.key);
      ctx.say(`corrupted ${latest.key} in S3 (one byte flipped; its metadata still says it is valid)`);
      await writesAcknowledged(ctx.writer, 10, 'after backup B');
      return { ...(await totalLoss(ctx)), restoreFrom: previous, mustSkip: latest.key };
    },
  },
  'flaky-restore': {
    description:
      "every instance dies, and the newest backup's downloads keep breaking off half-way (more often than one agent run retries): the restore retries the same backup, never an older one",
    size: 3,
    schedule: false,
    act: async (ctx) => {
      await uploadedBackup(ctx, 'A (older)');
      await writesAcknowledged(ctx.writer, 20, 'between the two backups (an older restore would lose them)');
      const latest = await uploadedBackup(ctx, 'B (newest)');
      const cut = FLAKY_RESTORE_CUTS;
      ctx.sandbox.s3Faults.cutDownloads(latest.key, cut, Math.floor(latest.size / 2));
      ctx.say(`the next ${cut} downloads of ${latest.key} break off after ${Math.floor(latest.size / 2)} of ${latest.size} bytes`);
      await writesAcknowledged(ctx.writer, 10, 'after backup B');
      return {
        ...(await totalLoss(ctx)),
        restoreFrom: latest,
        afterwards: () => {
          const made = ctx.sandbox.s3Faults.cuts.filter((c) => c.key === latest.key).length;
          const violations = made < cut ? [`only ${made} of ${cut} downloads of ${latest.key} were cut: the fault did not happen as planned`] : [];
          const skipped = ctx.sandbox.restores().skipped.filter((s) => s.key === latest.key);
          if (skipped.length > 0) violations.push(`the agents gave ${latest.key} up as invalid after a cut download: ${skipped[0]?.reason ?? ''}`);
          return violations;
        },
      };
    },
  },
  'fill-quota': {
    description: `a ${FILL_QUOTA_BYTES / 1024 ** 2} MiB space quota and a client that overwrites the same keys with 512 KiB values until etcd refuses writes (NOSPACE): reconcile compacts, defragments every member and disarms the alarm, without an operator`,
    size: 3,
    schedule: false,
    stackEnv: { ETCD_QUOTA_BACKEND_BYTES: String(FILL_QUOTA_BYTES) },
    act: async (ctx) => {
      const client = new Etcd3({ hosts: [...ctx.sandbox.endpoints()], ...etcd3Credentials(), dialTimeout: 2000 });
      try {
        const value = randomBytes(256 * 1024).toString('hex');
        let written = 0;
        const refusedAt = await ctx.step('filling the space quota', () =>
          waitFor(
            'etcd to refuse a write with NOSPACE',
            async () => {
              try {
                await client.put(`/sandbox/fill/${written % 8}`).value(`${written}:${value}`);
                written += 1;
                return undefined;
              } catch (error) {
                if (/space exceeded|NOSPACE/i.test((error as Error).message)) return Date.now();
                throw error;
              }
            },
            { timeoutMs: 120_000, intervalMs: 0 },
          ),
        );
        ctx.say(`etcd refuses writes (NOSPACE) after ${written} overwrites of 512 KiB; the filler stops`);
        const backAt = await ctx.step('writes accepted again', () =>
          waitFor(
            'a write to be accepted again',
            async () => {
              try {
                await client.put('/sandbox/fill/probe').value(String(Date.now()));
                return Date.now();
              } catch {
                return undefined;
              }
            },
            { timeoutMs: CONVERGE_MS, intervalMs: 1000 },
          ),
        );
        ctx.say(`writes accepted again ${((backAt - refusedAt) / 1000).toFixed(1)}s after NOSPACE`);
        const recovered = ctx.sandbox.maintenance().some((m) => m.action === 'recovered-space');
        return {
          faultAt: refusedAt,
          faultEndAt: refusedAt,
          sameInstances: true,
          violations: recovered ? [] : ["writes were accepted again, but reconcile never reported a NOSPACE recovery"],
        };
      } finally {
        client.close();
      }
    },
  },
};

/**
 * How often flaky-restore cuts the newest backup's download: more than the 5 tries of one agent run (the
 * agent then exits and systemd starts it again), fewer than two runs' worth.
 */
export const FLAKY_RESTORE_CUTS = 7;

export interface ScenarioSummary {
  readonly scenario: string;
  readonly ok: boolean;
  /** Each invariant that did not hold, in words. */
  readonly violations: readonly string[];
  readonly durationMs: number;
  /** From the fault (or, for cold-start, from the first agent's start) until members == instances, all voting and healthy. */
  readonly convergeMs: number;
  readonly cluster: {
    readonly before: string | undefined;
    readonly after: string;
    /** Set when the cluster after is a new one restored from a backup. */
    readonly restoredFrom: string | undefined;
    readonly skippedBackups: ReadonlyArray<{ key: string; reason: string }>;
    readonly members: ReadonlyArray<{ name: string; voting: boolean }>;
    readonly instances: readonly string[];
  };
  readonly writes: {
    /** The key prefix of the writes (etcdctl get PREFIX --prefix shows them). */
    readonly prefix: string;
    readonly acknowledged: number;
    readonly lost: number;
    readonly lostSeqs: readonly number[];
    readonly longestUnavailableMs: number;
    readonly failedAttempts: number;
  };
  /** total-loss and corrupt-latest-backup: what the restore could not bring back. */
  readonly rpo?: {
    readonly backupKey: string;
    readonly backupRevision: string;
    /** Acknowledged writes newer than the restored backup: lost by design, the measured RPO. */
    readonly writesAfterBackup: number;
    /** Time between the newest write the restore brought back and the newest acknowledged before the loss. */
    readonly seconds: number;
  };
  /** upgrade: the releases rolled through, and each change of the cluster version with what the members ran then. */
  readonly etcd?: {
    readonly from: string;
    readonly to: string;
    readonly clusterVersions: ReadonlyArray<{ readonly atMs: number; readonly clusterVersion: string; readonly servers: readonly string[] }>;
  };
  readonly timeline: ReadonlyArray<{ readonly atMs: number; readonly event: string }>;
  readonly logs: string;
}

function hex(id: string | undefined): string | undefined {
  return id === undefined ? undefined : hexMemberId(id);
}

/**
 * Runs one scenario on a fresh sandbox: brings the cluster up, starts the sequence writer, injects the
 * fault, waits for convergence, then checks the invariants against etcd itself. The sandbox is closed
 * afterwards (its processes belong to `options.processes`).
 */
export async function runScenario(
  name: string,
  options: Omit<SandboxOptions, 'size' | 'onEvent' | 'backupEveryMs'> & {
    onEvent?: (atMs: number, message: string) => void;
    progress?: <T>(name: string, work: () => Promise<T>, status: () => string) => Promise<T>;
    start: (options: SandboxOptions) => Promise<Sandbox>;
    /** Runs after the checks, before the sandbox closes: tests look at the converged system themselves. */
    inspect?: (sandbox: Sandbox, summary: ScenarioSummary) => Promise<void>;
  },
): Promise<ScenarioSummary> {
  const scenario = SCENARIOS[name];
  if (!scenario) throw new Error(`no scenario "${name}"; choose one of: ${Object.keys(SCENARIOS).join(', ')}`);
  const started = Date.now();
  const timeline: Array<{ atMs: number; event: string }> = [];
  const say = (event: string) => {
    const atMs = Date.now() - started;
    timeline.push({ atMs, event });
    options.onEvent?.(atMs, event);
  };
  say(`scenario ${name}: ${scenario.description}`);
  const sandbox = await options.start({
    ...options,
    size: scenario.size,
    onEvent: say,
    backupEveryMs: scenario.schedule ? 20_000 : 0,
    ...(scenario.etcdVersion === undefined ? {} : { etcdVersion: scenario.etcdVersion }),
    ...(scenario.healthCheckType === undefined ? {} : { healthCheckType: scenario.healthCheckType }),
    ...(scenario.stackEnv === undefined ? {} : { stackEnv: scenario.stackEnv }),
    ...(scenario.tls === undefined ? {} : { tls: scenario.tls }),
  });
  let writer: SequenceWriter | undefined;
  try {
    const step = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      const status = () => (writer ? `${writer.acknowledged.length} writes acknowledged` : '');
      const out = options.progress ? await options.progress(label, work, status) : await work();
      say(`${label}: done in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      return out;
    };
    const ctx = (w: SequenceWriter): Context => ({ sandbox, writer: w, say, step });

    const initial = await step(`cluster of ${scenario.size} converging`, () => sandbox.converge(CONVERGE_MS));
    const coldStartMs = Date.now() - started;
    const before = initial.clusterIds[0];
    const initialInstances = sandbox.instances().map((i) => i.instanceId);
    say(`cluster ${hex(before) ?? '?'}: ${initial.members.length} voting members`);
    writer = new SequenceWriter(() => sandbox.endpoints());
    writer.start();
    await writesAcknowledged(writer, 10, 'before the fault');
    const act = await scenario.act(ctx(writer));
    const converged: ClusterSnapshot = await step('convergence', () => sandbox.converge(CONVERGE_MS));
    const afterwards = act.afterwards?.() ?? [];
    const convergeMs = name === 'cold-start' ? coldStartMs : Date.now() - act.faultAt;
    await writesAcknowledged(writer, 10, 'after convergence');
    await writer.stop();
    const report = writer.report();
    const endpoints = sandbox.endpoints();
    const acked = writer.acknowledged;
    const check = await writer.check(endpoints);
    const after = converged.clusterIds[0] ?? '';
    const restores = sandbox.restores();
    const violations: string[] = [];
    const faultEndAt = act.faultEndAt ?? act.faultAt;
    violations.push(...(act.violations ?? []), ...afterwards);
    if (act.sameInstances) {
      const now = sandbox.instances().map((i) => i.instanceId).sort();
      const replaced = initialInstances.filter((id) => !now.includes(id));
      if (replaced.length > 0) violations.push(`instances were replaced: ${replaced.join(', ')} (now ${now.join(', ')})`);
    }

    // Invariant: one cluster throughout, unless a restore was expected, which must be from the right backup.
    let restoredFrom: string | undefined;
    if (act.restoreFrom) {
      restoredFrom = restores.restored.at(-1);
      if (restoredFrom !== act.restoreFrom.key) violations.push(`expected a restore from ${act.restoreFrom.key}; the agents restored ${restoredFrom ?? 'nothing'}`);
      if (act.mustSkip && !restores.skipped.some((s) => s.key === act.mustSkip)) violations.push(`the restore did not report skipping the corrupt ${act.mustSkip}`);
      if (after === before) violations.push('the cluster ID did not change, yet the cluster was restored from a backup');
    } else if (after !== before) {
      violations.push(`the cluster ID changed from ${hex(before) ?? '?'} to ${hex(after) ?? '?'}`);
    }
    if (!act.restoreFrom && restores.restored.length > 0) violations.push(`unexpected restore from ${restores.restored.join(', ')}`);

    // Invariant: no acknowledged write lost, except those the scenario's promise excludes.
    let rpo: ScenarioSummary['rpo'];
    const lostBeyond = (allowed: (w: AckedWrite) => boolean) => check.lost.filter((w) => !allowed(w));
    if (act.restoreFrom) {
      const backup = act.restoreFrom;
      const inBackup = (w: AckedWrite) => w.revision <= BigInt(backup.revision.before);
      // Writes before the fault that the backup could not hold are the RPO; every one it held must be back.
      const unexpected = lostBeyond((w) => !inBackup(w) && w.ackedAt <= faultEndAt);
      if (unexpected.length > 0) violations.push(`${unexpected.length} acknowledged writes the backup held were lost (first seq ${unexpected[0]!.seq})`);
      const beforeFault = acked.filter((w) => w.ackedAt <= faultEndAt);
      const lostSet = new Set(check.lost.map((w) => w.seq));
      const newestBack = beforeFault.filter((w) => !lostSet.has(w.seq)).at(-1);
      const newestAcked = beforeFault.at(-1);
      rpo = {
        backupKey: backup.key,
        backupRevision: backup.revision.after,
        writesAfterBackup: check.lost.length,
        seconds: newestBack && newestAcked ? (newestAcked.ackedAt - newestBack.ackedAt) / 1000 : 0,
      };
      if (check.lost.length === 0) violations.push('no write was lost in a restore from backup: the RPO was not exercised (writes after the backup are expected)');
    } else {
      const unexpected = lostBeyond((w) => act.mayLoseAckedAfter !== undefined && w.ackedAt > act.mayLoseAckedAfter && w.ackedAt <= faultEndAt);
      if (unexpected.length > 0) violations.push(`${unexpected.length} acknowledged writes were lost (first seq ${unexpected[0]!.seq})`);
    }
    // Invariant: after convergence, members == the group's instances, all voting (converge waited for it;
    // this re-reads what it found, so the summary shows it).
    const instances = sandbox.instances().map((i) => i.instanceId).sort();
    const members = converged.members.map((m) => ({ name: m.name, voting: !m.isLearner }));
    if (members.map((m) => m.name).sort().join() !== instances.join() || members.some((m) => !m.voting)) {
      violations.push(`members ${JSON.stringify(members)} are not the group's instances ${instances.join(', ')}, all voting`);
    }

    say(violations.length === 0 ? `scenario ${name} passed` : `scenario ${name} FAILED: ${violations.join('; ')}`);
    const summary: ScenarioSummary = {
      scenario: name,
      ok: violations.length === 0,
      violations,
      durationMs: Date.now() - started,
      convergeMs,
      cluster: {
        before: hex(before),
        after: hex(after) ?? '',
        restoredFrom,
        skippedBackups: restores.skipped,
        members,
        instances,
      },
      writes: {
        prefix: writer.prefix,
        acknowledged: report.acked,
        lost: check.lost.length,
        lostSeqs: check.lost.slice(0, 20).map((w) => w.seq),
        longestUnavailableMs: report.longestUnavailableMs,
        failedAttempts: report.failedAttempts,
      },
      rpo,
      ...(act.etcd ? { etcd: act.etcd } : {}),
      timeline,
      logs: options.workDir,
    };
    await options.inspect?.(sandbox, summary);
    return summary;
  } finally {
    await writer?.stop();
    await sandbox.close();
  }
}
