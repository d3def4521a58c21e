import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { InstanceIdentity } from '../core/ports.js';
import { startImds, type ImdsServer } from './imds.js';
import { emulatorEnv } from './moto.js';
import type { ManagedProcess, ProcessGroup } from './processes.js';
import { NEWEST_ETCD, etcdRelease, etcdctlBin } from './tools.js';
import { waitFor } from './wait.js';
import { clientUrlOf, etcdctlTlsArgs } from './pki.js';

const run = promisify(execFile);

/**
 * etcd checks that a peer connecting with a certificate comes from an address the certificate names. On EC2
 * it does (an instance's connections leave from its private IP); on loopback they leave from 127.0.0.1,
 * whatever address the member listens on, so the test bed alone turns that one check off. Everything else
 * about peer TLS (the peer CA, the CN, the server certificate's IP) is checked as in the stack.
 */
export function loopbackPeerSans(etcdVersion: string): Record<string, string> {
  const [major = 0, minor = 0] = etcdVersion.split('.').map(Number);
  return major === 3 && minor < 6 ? { ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION: 'true' } : { ETCD_PEER_SKIP_CLIENT_SAN_VERIFICATION: 'true' };
}

export interface AgentNode {
  readonly instance: InstanceIdentity;
  /**
   * The etcd this instance runs (ETCD_AWS_BIN_DIR), fixed at its first start as cloud-init installs it
   * once: a restart of the agent keeps it whatever the fleet's current release is.
   */
  etcdBinDir: string;
  /** That etcd's release ("3.6.16"). */
  readonly etcdVersion: string;
  /** The launch template version the instance was launched from, and what it added to the agent's environment. */
  readonly template: LaunchTemplate;
  readonly dataDir: string;
  readonly logFile: string;
  readonly clientUrl: string;
  process: ManagedProcess | undefined;
}

/** Timing for tests: short polls and leases so elections and waits take seconds, not minutes. */
export const FAST_TIMING: Record<string, string> = {
  ETCD_AWS_POLL_MS: '250',
  ETCD_AWS_SEED_LEASE_MS: '4000',
  ETCD_AWS_REGISTRATION_FRESH_MS: '4000',
  ETCD_AWS_DIAL_TIMEOUT_MS: '1000',
  ETCD_AWS_CALL_TIMEOUT_MS: '2000',
  // Several etcd election timeouts (1 s by default), so a leader change never looks like a permanent loss.
  ETCD_AWS_QUORUM_LOSS_GRACE_MS: '3000',
};

/** What a launch template version gives an instance: the etcd release cloud-init installs, settings for the agent. */
export interface LaunchTemplate {
  readonly version: number;
  /** "3.7"; the test bed's selected release when absent. */
  readonly etcdVersion?: string | undefined;
  readonly env?: Readonly<Record<string, string>> | undefined;
}

/**
 * Node agents (the built bundle, `run`) for simulated instances, each with its own IMDSv2 server and data
 * dir; the agent starts etcd itself. Every agent and its etcd belong to the given ProcessGroup.
 */
export class AgentFleet {
  private readonly nodes = new Map<string, AgentNode>();
  private readonly imds = new Map<string, ImdsServer>();

  constructor(
    private readonly options: {
      processes: ProcessGroup;
      workDir: string;
      bundle: string;
      bucket: string;
      awsEndpoint: string;
      env?: Record<string, string>;
      /** The etcd release new instances get ("3.7"); the test bed's selected one when absent. */
      etcdVersion?: string;
      /** The cgroup an instance's agent and etcd run in (network faults match on it); none when absent. */
      cgroupFor?: (instance: InstanceIdentity) => string;
    },
  ) {
    mkdirSync(options.workDir, { recursive: true });
    this.template = { version: 1, etcdVersion: options.etcdVersion };
  }

  private template: LaunchTemplate;

  /** The launch template instances started from now on get; restarts keep the one they were launched from. */
  launchTemplate(): LaunchTemplate {
    return this.template;
  }

  /** A new launch template version (or, for a rollback, an earlier one again). */
  setLaunchTemplate(template: LaunchTemplate): void {
    etcdRelease(template.etcdVersion);
    this.template = template;
  }

  /** The etcd release instances started from now on install (a launch template change); restarts keep theirs. */
  setEtcdRelease(version: string): void {
    this.setLaunchTemplate({ ...this.template, version: this.template.version + 1, etcdVersion: version });
  }

  /** From now on the instance's agent runs the etcd in `binDir` (a broken binary, a failing disk). */
  overrideEtcd(instanceId: string, binDir: string): void {
    this.node(instanceId).etcdBinDir = binDir;
  }

  node(instanceId: string): AgentNode {
    const node = this.nodes.get(instanceId);
    if (!node) throw new Error(`no agent for ${instanceId}`);
    return node;
  }

  /** Every instance that has had an agent. */
  list(): AgentNode[] {
    return [...this.nodes.values()];
  }

  /** Starts (or restarts) the agent of an instance, with its data dir as it is now. */
  async start(
    instance: InstanceIdentity,
    env: Record<string, string> = {},
    as?: { uid: number; gid: number; bundle: string },
  ): Promise<AgentNode> {
    let imds = this.imds.get(instance.instanceId);
    if (!imds) {
      imds = await startImds(instance);
      this.imds.set(instance.instanceId, imds);
    }
    const existing = this.nodes.get(instance.instanceId);
    if (existing?.process?.running()) throw new Error(`agent of ${instance.instanceId} is already running`);
    const release = etcdRelease(this.template.etcdVersion);
    const node: AgentNode = existing ?? {
      instance,
      etcdBinDir: release.binDir,
      etcdVersion: release.version,
      template: this.template,
      dataDir: path.join(this.options.workDir, `${instance.instanceId}.etcd`),
      logFile: path.join(this.options.workDir, `${instance.instanceId}.agent.log`),
      clientUrl: clientUrlOf(instance.privateIp),
      process: undefined,
    };
    const cgroup = as ? undefined : this.options.cgroupFor?.(instance);
    node.process = this.options.processes.spawn(`agent ${instance.instanceId}`, process.execPath, [as?.bundle ?? this.options.bundle, 'run'], {
      logFile: node.logFile,
      uid: as?.uid,
      gid: as?.gid,
      ...(cgroup === undefined ? {} : { cgroup }),
      env: this.agentEnv(node, imds, env),
    });
    this.nodes.set(instance.instanceId, node);
    return node;
  }

  /** The agent's environment on an instance: what cloud-init writes to agent.env, and the test bed's endpoints. */
  private agentEnv(node: AgentNode, imds: ImdsServer, env: Record<string, string>): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ...emulatorEnv(this.options.awsEndpoint),
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
      ETCD_DATA_DIR: node.dataDir,
      ETCD_AWS_CERT_DIR: `${node.dataDir}.pki`,
      ...loopbackPeerSans(node.etcdVersion),
      ETCD_AWS_BIN_DIR: node.etcdBinDir,
      BACKUP_BUCKET: this.options.bucket,
      POWERTOOLS_LOG_LEVEL: 'DEBUG',
      ...FAST_TIMING,
      ...this.options.env,
      ...node.template.env,
      ...env,
    };
  }

  /**
   * Runs another node-agent command on a running instance, as an operator in a shell there would (its
   * agent.env, its IMDS), to completion; killed after `timeoutMs`. Returns its exit code and output.
   */
  async command(instanceId: string, args: readonly string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
    const node = this.node(instanceId);
    const imds = this.imds.get(instanceId);
    if (!imds) throw new Error(`${instanceId} has no IMDS: start its agent first`);
    return run(process.execPath, [this.options.bundle, ...args], { env: this.agentEnv(node, imds, {}), timeout: timeoutMs, killSignal: 'SIGKILL' }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (error: unknown) => {
        const e = error as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      },
    );
  }

  /** SIGTERM to the agent, which forwards it to etcd and exits with it. */
  async stop(instanceId: string): Promise<void> {
    const p = this.node(instanceId).process;
    if (p) await this.options.processes.stop(p, 8000);
  }

  /** SIGKILL to the agent and its etcd: the instance dies. */
  async kill(instanceId: string): Promise<void> {
    const p = this.node(instanceId).process;
    if (p) await this.options.processes.kill(p);
  }

  /** SIGKILL to the instance's etcd alone: the agent sees it exit, and exits with it. */
  killEtcd(instanceId: string): void {
    const p = this.node(instanceId).process;
    if (p?.running()) this.options.processes.killDescendants(p);
  }

  /** The instance stops answering without dying (SIGSTOP to its agent and etcd): a hung host, a long GC pause. */
  pause(instanceId: string): void {
    const p = this.node(instanceId).process;
    if (p?.running()) this.options.processes.pause(p);
  }

  resume(instanceId: string): void {
    const p = this.node(instanceId).process;
    if (p?.running()) this.options.processes.resume(p);
  }

  /** Deletes a stopped instance's data dir (a lost disk). */
  wipe(instanceId: string): void {
    const node = this.node(instanceId);
    if (node.process?.running()) throw new Error(`stop the agent of ${instanceId} before wiping its data`);
    rmSync(node.dataDir, { recursive: true, force: true });
  }

  async closeAll(): Promise<void> {
    const running = [...this.nodes.values()].flatMap((n) => (n.process ? [n.process] : []));
    await Promise.all(running.map((p) => this.options.processes.stop(p, 5000)));
    await Promise.all([...this.imds.values()].map((s) => s.close()));
  }
}

export interface ClusterSnapshot {
  readonly clusterIds: readonly string[];
  /** Endpoints that answered Status. */
  readonly answered: number;
  readonly members: ReadonlyArray<{ id: string; name: string; isLearner: boolean }>;
}

/**
 * The cluster as etcd's own tool reports it: member list plus the cluster ID each endpoint answers with.
 * `local`: the member list as the answering member knows it (serializable), which a member without quorum
 * still serves. etcdctl asks for a linearizable list unless told `--consistency=s`, which 3.5's etcdctl cannot
 * say (its client always asks linearizably): the local list is asked with the newest etcdctl, which every
 * supported server answers.
 */
export async function inspectCluster(endpoints: readonly string[], options: { local?: boolean } = {}): Promise<ClusterSnapshot> {
  const tool = options.local ? etcdctlBin(NEWEST_ETCD) : etcdctlBin();
  const consistency = options.local ? ['--consistency=s'] : [];
  const { stdout: list } = await run(tool, [...etcdctlTlsArgs(), '--endpoints', endpoints.join(','), '--command-timeout=3s', 'member', 'list', ...consistency, '-w', 'json']);
  // IDs are uint64: read them as strings from the JSON text, never through a double.
  const parsed = JSON.parse(list) as { members?: Array<{ name?: string; isLearner?: boolean }> };
  const ids = [...list.matchAll(/"ID":(\d+)/g)].map((m) => m[1] as string);
  const members = (parsed.members ?? []).map((m, i) => ({ id: ids[i] ?? '?', name: m.name ?? '', isLearner: m.isLearner === true }));
  const clusterIds = new Set<string>();
  let answered = 0;
  for (const endpoint of endpoints) {
    try {
      const { stdout } = await run(etcdctlBin(), [...etcdctlTlsArgs(), '--endpoints', endpoint, '--command-timeout=2s', 'endpoint', 'status', '-w', 'json']);
      const id = /"cluster_id":(\d+)/.exec(stdout)?.[1];
      if (id) clusterIds.add(id);
      answered += 1;
    } catch {
      // not answering: not counted
    }
  }
  return { clusterIds: [...clusterIds], answered, members };
}

/** The members are exactly `names`, all voting, every one of `endpointCount` endpoints answered, one cluster ID. */
export function isConverged(snapshot: ClusterSnapshot, names: readonly string[], endpointCount: number): boolean {
  const got = snapshot.members.map((m) => m.name).sort();
  return (
    got.join() === [...names].sort().join() &&
    snapshot.members.every((m) => !m.isLearner) &&
    snapshot.clusterIds.length === 1 &&
    snapshot.answered === endpointCount
  );
}

/**
 * Waits until the cluster's members are exactly `names`, all voting, every endpoint answers, all with one
 * cluster ID, and `also` (when given) holds.
 */
export async function waitForVotingMembers(
  endpoints: readonly string[],
  names: readonly string[],
  timeoutMs = 60_000,
  also: (snapshot: ClusterSnapshot) => boolean = () => true,
): Promise<ClusterSnapshot> {
  let last: ClusterSnapshot | undefined;
  try {
    return await waitFor(
      `members ${[...names].sort().join(', ')} all voting in one cluster`,
      async () => {
        last = await inspectCluster(endpoints);
        return isConverged(last, names, endpoints.length) && also(last) ? last : undefined;
      },
      { timeoutMs, intervalMs: 250 },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last seen: ${JSON.stringify(last)}`);
  }
}

/** The client URL of the member that the answering endpoints call their leader, by etcd's own tool. */
export async function leaderUrl(endpoints: readonly string[]): Promise<string | undefined> {
  for (const endpoint of endpoints) {
    try {
      const { stdout } = await run(etcdctlBin(), [...etcdctlTlsArgs(), '--endpoints', endpoint, '--command-timeout=2s', 'endpoint', 'status', '-w', 'json']);
      const member = /"member_id":(\d+)/.exec(stdout)?.[1];
      const leader = /"leader":(\d+)/.exec(stdout)?.[1];
      if (member !== undefined && member === leader) return endpoint;
    } catch {
      // not answering
    }
  }
  return undefined;
}
