import { mkdirSync, rmSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { ManagedProcess, ProcessGroup } from './processes.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { etcdBin, etcdctlBin } from './tools.js';

const execFileAsync = promisify(execFile);
import { waitFor } from './wait.js';

export interface EtcdNodeSpec {
  readonly name: string;
  /** A loopback address of its own (127.x.y.z): etcd listens on the standard ports 2379/2380 there. */
  readonly ip: string;
}

export interface EtcdTestNode extends EtcdNodeSpec {
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  process: ManagedProcess | undefined;
}

/** The environment etcd runs with: the caller's, minus any ETCD_* variable that would change its flags. */
function etcdEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
}

export async function etcdHealthy(clientUrl: string): Promise<boolean> {
  const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(2000) });
  const body = (await res.json()) as { health?: string };
  return body.health === 'true';
}

/**
 * Real etcd servers on loopback, one address per node, started with temp data dirs. Every process is
 * owned by the given ProcessGroup: `teardown` (or the group's stopAll) ends them by PID.
 */
export class EtcdTestCluster {
  readonly nodes: EtcdTestNode[];

  private constructor(
    specs: readonly EtcdNodeSpec[],
    private readonly workDir: string,
    private readonly processes: ProcessGroup,
    readonly token: string,
    /** The etcd release the nodes run ("3.7"); the test bed's selected one when undefined. */
    readonly version: string | undefined,
    /** More etcd flags for every node (e.g. a small --quota-backend-bytes). */
    private readonly extraFlags: readonly string[] = [],
  ) {
    this.nodes = specs.map((s) => ({
      ...s,
      clientUrl: `http://${s.ip}:2379`,
      peerUrl: `http://${s.ip}:2380`,
      dataDir: path.join(workDir, `${s.name}.etcd`),
      logFile: path.join(workDir, `${s.name}.log`),
      process: undefined,
    }));
  }

  /** Starts every node as one new cluster and waits until each reports healthy. */
  static async start(options: {
    nodes: readonly EtcdNodeSpec[];
    workDir: string;
    processes: ProcessGroup;
    token?: string;
    /** The etcd release to run ("3.7"); the test bed's selected one by default. */
    version?: string;
    /** More etcd flags for every node. */
    extraFlags?: readonly string[];
  }): Promise<EtcdTestCluster> {
    mkdirSync(options.workDir, { recursive: true });
    const token = options.token ?? `etcd-aws-test-${process.pid}-${Date.now()}`;
    const cluster = new EtcdTestCluster(options.nodes, options.workDir, options.processes, token, options.version, options.extraFlags);
    for (const node of cluster.nodes) cluster.launch(node, 'new');
    await Promise.all(cluster.nodes.map((n) => cluster.waitHealthy(n.name)));
    return cluster;
  }

  node(name: string): EtcdTestNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no etcd test node named ${name}`);
    return node;
  }

  clientUrls(): string[] {
    return this.nodes.map((n) => n.clientUrl);
  }

  private launch(node: EtcdTestNode, state: 'new' | 'existing'): void {
    if (node.process?.running()) throw new Error(`etcd ${node.name} is already running (pid ${node.process.pid})`);
    const initialCluster = this.nodes.map((n) => `${n.name}=${n.peerUrl}`).join(',');
    node.process = this.processes.spawn(
      `etcd ${node.name}`,
      etcdBin(this.version),
      [
        `--name=${node.name}`,
        `--data-dir=${node.dataDir}`,
        `--listen-client-urls=${node.clientUrl}`,
        `--advertise-client-urls=${node.clientUrl}`,
        `--listen-peer-urls=${node.peerUrl}`,
        `--initial-advertise-peer-urls=${node.peerUrl}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${this.token}`,
        `--initial-cluster-state=${state}`,
        '--logger=zap',
        '--log-outputs=stderr',
        ...this.extraFlags,
      ],
      { logFile: node.logFile, env: etcdEnv() },
    );
  }

  /** Waits until the node answers /health with true (it has a leader and serves requests). */
  async waitHealthy(name: string, timeoutMs = 30_000): Promise<void> {
    const node = this.node(name);
    await waitFor(
      `etcd ${name} at ${node.clientUrl} to report healthy (log: ${node.logFile})`,
      async () => {
        if (!node.process?.running()) throw new Error(`etcd ${name} is not running; see ${node.logFile}`);
        return etcdHealthy(node.clientUrl);
      },
      { timeoutMs, intervalMs: 150 },
    );
  }

  /** SIGTERM, then SIGKILL after `graceMs`: etcd may ignore SIGTERM while it has lost quorum. */
  async stop(name: string, graceMs = 5000): Promise<void> {
    const node = this.node(name);
    if (node.process) await this.processes.stop(node.process, graceMs);
  }

  /** SIGKILL: the node crashes. */
  async kill(name: string): Promise<void> {
    const node = this.node(name);
    if (node.process) await this.processes.kill(node.process);
  }

  /** Deletes a stopped node's data dir, as when an instance and its disk are lost. */
  wipe(name: string): void {
    const node = this.node(name);
    if (node.process?.running()) throw new Error(`stop etcd ${name} before wiping its data dir`);
    rmSync(node.dataDir, { recursive: true, force: true });
  }

  /** Starts a stopped node again from its data dir. */
  /**
   * Adds a node as a learner (etcd's MemberAdd through a running member), starts it and waits until it runs.
   * A learner serves no linearizable request: what the control plane must route around.
   */
  async addLearner(spec: EtcdNodeSpec): Promise<EtcdTestNode> {
    const node: EtcdTestNode = {
      ...spec,
      clientUrl: `http://${spec.ip}:2379`,
      peerUrl: `http://${spec.ip}:2380`,
      dataDir: path.join(this.workDir, `${spec.name}.etcd`),
      logFile: path.join(this.workDir, `${spec.name}.log`),
      process: undefined,
    };
    await execFileAsync(etcdctlBin(this.version), ['--endpoints', this.clientUrls().join(','), 'member', 'add', spec.name, `--peer-urls=${node.peerUrl}`, '--learner']);
    this.nodes.push(node);
    this.launch(node, 'existing');
    await waitFor(
      `learner ${spec.name} to follow a leader`,
      async () => {
        const out = await execFileAsync(etcdctlBin(this.version), ['--endpoints', node.clientUrl, '--command-timeout=2s', 'endpoint', 'status', '-w', 'json']).catch(() => undefined);
        const leader = /"leader":(\d+)/.exec(out?.stdout ?? '')?.[1];
        return leader !== undefined && leader !== '0';
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    return node;
  }

  async restart(name: string): Promise<void> {
    const node = this.node(name);
    if (!existsSync(node.dataDir)) throw new Error(`etcd ${name} has no data dir to restart from (wiped?)`);
    this.launch(node, 'existing');
    await this.waitHealthy(name);
  }

  /** Ends every node by PID (SIGKILL after the grace period) and removes the data dirs. */
  async teardown(options: { keepFiles?: boolean } = {}): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.stop(n.name, 3000)));
    if (!options.keepFiles) rmSync(this.workDir, { recursive: true, force: true });
  }
}
