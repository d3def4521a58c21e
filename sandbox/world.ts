import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AutoScalingClient,
  DescribeAutoScalingGroupsCommand,
  SetDesiredCapacityCommand,
  TerminateInstanceInAutoScalingGroupCommand,
} from '@aws-sdk/client-auto-scaling';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { InstanceIdentity } from '../core/ports.js';
import type { BackupSummary } from '../core/use-cases/backup.js';
import type { MaintenanceResult } from '../core/use-cases/maintenance.js';
import type { ReconcileResult } from '../core/use-cases/reconcile.js';
import { AgentFleet, inspectCluster, isConverged, leaderUrl, type ClusterSnapshot, FAST_TIMING } from '../testbed/agents.js';
import { startAutoScalingShim, type AutoScalingShim } from '../testbed/autoscaling-shim.js';
import { createSimulatedGroup, describeGroupInstances } from '../testbed/aws-world.js';
import { handlerEnv, invokeBundle } from '../testbed/lambda.js';
import { emulatorEnv, startMoto } from '../testbed/moto.js';
import type { LoopbackNetwork } from '../testbed/network.js';
import type { ProcessGroup } from '../testbed/processes.js';
import { startLambdaService, type LambdaService } from '../testbed/lambda-service.js';
import { pollOnce } from '../testbed/sqs-poller.js';
import { etcdRelease } from '../testbed/tools.js';
import { waitFor } from '../testbed/wait.js';
import { S3FaultProxy } from '../testbed/s3-faults.js';
import { NetworkFaults } from '../testbed/net-faults.js';
import { clientUrlOf, TestbedPki, useClientTls, type ClientTls } from '../testbed/pki.js';
import type { TlsMode } from '../core/config.js';

export interface Bundles {
  readonly agent: string;
  readonly lifecycle: string;
  readonly backup: string;
  readonly reconcile: string;
  readonly issuer: string;
}

/** The bundles `npm run build` (scripts/build.mjs) writes under a dist directory. */
export function bundlesIn(dist: string): Bundles {
  const fn = (name: string) => path.join(dist, 'functions', name, 'index.mjs');
  return { agent: path.join(dist, 'node-agent', 'node-agent.mjs'), lifecycle: fn('lifecycle'), backup: fn('backup'), reconcile: fn('reconcile'), issuer: fn('issuer') };
}

export interface SandboxOptions {
  readonly size: number;
  readonly workDir: string;
  readonly processes: ProcessGroup;
  readonly network: LoopbackNetwork;
  readonly bundles: Bundles;
  /** An emulator already running (the tests share one); without it the sandbox starts its own. */
  readonly awsEndpoint?: string;
  readonly name?: string;
  /** Scheduled backups (EventBridge's rate rule); 0 turns the schedule off. */
  readonly backupEveryMs?: number;
  /** Scheduled reconcile runs; 0 turns the schedule off. */
  readonly reconcileEveryMs?: number;
  /** Timeline output: one line per thing that happened. */
  readonly onEvent?: (message: string) => void;
  /** The etcd release the launch template installs at first ("3.5"); the test bed's selected one by default. */
  readonly etcdVersion?: string;
  /**
   * The group's health check type: `EC2` (the stack's: status checks and the agents' own verdicts) or `ELB`
   * (the load balancer's /health check, which fails on every member while quorum is lost).
   */
  readonly healthCheckType?: 'EC2' | 'ELB';
  /**
   * Stack settings that reach both the agents (etcd's flags) and the functions, as the stack's parameters do
   * (e.g. ETCD_QUOTA_BACKEND_BYTES, etcd's space quota).
   */
  readonly stackEnv?: Readonly<Record<string, string>>;
  /**
   * TLS with client certificates and etcd authentication, as the stack runs by default (`true`, or `on`):
   * the issuer gives every agent and function its certificates, and the test's own clients use the control
   * plane's. `off` is a plaintext stack that has its issuer (what a stack with tls=off deploys), so it can
   * move to TLS (moveTls); `false` is plaintext without one.
   */
  readonly tls?: boolean | TlsMode;
}

type ControlFunction = 'lifecycle' | 'backup' | 'reconcile';

/** The sandbox's Lambda side: the Invoke API for the functions that invoke others, and the PKI under TLS. */
interface SandboxFunctions {
  readonly lambda: LambdaService;
  readonly names: Readonly<Record<ControlFunction, string>>;
  /** Under TLS: the CA secret and issuer, and what each function's environment adds (its role session). */
  readonly tls:
    | {
        readonly pki: TestbedPki;
        readonly env: Readonly<Record<ControlFunction, Record<string, string>>>;
        /** The control plane's root certificate, which the test's own clients use while TLS is on. */
        readonly client: ClientTls;
      }
    | undefined;
}

/**
 * AWS's timings, shortened for one machine (the stack's values in brackets): the launching hook's heartbeat
 * timeout (600 s) and the agent's heartbeat (120 s) and deadline (25 min); the terminating hook's heartbeat
 * timeout (900 s; longer than the queue's redelivery, 30 s here); the health check grace period (300 s), the
 * load balancer's check interval (10 s) and threshold (2); the rolling update's PauseTime (30 min).
 */
export const SANDBOX_TIMING = {
  launchHookTimeoutMs: 30_000,
  launchHeartbeatMs: 5_000,
  launchDeadlineMs: 90_000,
  terminationHookTimeoutMs: 60_000,
  healthGraceMs: 20_000,
  healthIntervalMs: 2_000,
  healthThreshold: 2,
  pauseTimeMs: 75_000,
  /** Reconcile's ETCD_AWS_CUT_OFF_GRACE_MS (5 minutes in the stack). */
  cutOffGraceMs: 15_000,
} as const;

type LifecycleResult = { batchItemFailures: Array<{ itemIdentifier: string }> };

/** Agent log messages worth a line in the timeline: what the agents decided and did. */
const NOTABLE = new Set([
  'founding a new cluster',
  'no backup exists; founding an empty cluster',
  'restoring backup',
  'restored backup',
  'backup is invalid; trying the previous one',
  'could not read or restore a backup for a reason that says nothing about it; trying it again',
  'took over an expired seed lease',
  'restarting from local data',
  'removed stale member',
  'set aside local data of a removed member or another cluster',
  'added as learner',
  'promoted to voting member',
  'etcd has no quorum',
  'forcing a new cluster from this member',
  'etcd restarted with force-new-cluster; replacements can join it now',
  'launch completed: the member votes',
  'launch abandoned',
  'marked this instance unhealthy; Auto Scaling replaces it',
  'refusing to start',
]);

/** The systemd unit's RestartSec, shortened: an agent that exited on a live instance is started again. */
const RESTART_DELAY_MS = 1000;

/**
 * The whole system on one machine: the AWS emulator (EC2, Auto Scaling, S3, SQS), the Auto Scaling shim
 * (termination hook, Terminating:Wait, lifecycle action completion), a node agent + etcd per instance, and
 * the three Lambda handlers invoked as Lambda would: the lifecycle handler through an SQS event source
 * mapping, backup and reconcile on their schedules. A control loop plays what AWS does around them:
 * launching an agent on every new instance (cloud-init), restarting an agent that exited (systemd), and
 * ending the processes of an instance that Auto Scaling terminated.
 */
export class Sandbox {
  readonly groupName: string;
  readonly bucket: string;
  readonly fleet: AgentFleet;
  private current: InstanceIdentity[] = [];
  private readonly dead = new Set<string>();
  private readonly maintenanceSteps: MaintenanceResult[] = [];
  private readonly exitedAt = new Map<string, number>();
  private readonly logOffsets = new Map<string, number>();
  private readonly restoreLog = { restored: [] as string[], skipped: [] as Array<{ key: string; reason: string }> };
  /** Peer-traffic limit (kbit/s) given to every instance launched from now on; undefined: none. */
  private newInstanceKbit: number | undefined;
  /** What the lifecycle handler logged about a last voter waiting for a learner (promote-first). */
  readonly promoteFirst = { waited: 0, promoted: 0 };
  private stopping = false;
  private isStopping(): boolean {
    return this.stopping;
  }
  private readonly loops: Array<Promise<void>> = [];
  private readonly autoScaling: AutoScalingClient;
  private readonly upstreamAutoScaling: AutoScalingClient;
  /** The emulator's PID when this sandbox started it. */
  emulatorPid: number | undefined;
  /** ETCD_AWS_TLS of the stack as it is now: the functions' and the next launches' (moveTls changes it). */
  private tlsMode: TlsMode;

  private constructor(
    private readonly options: SandboxOptions,
    readonly awsEndpoint: string,
    readonly shim: AutoScalingShim,
    /** S3 as the agents reach it: forwards to the emulator, and cuts the downloads a scenario chooses. */
    readonly s3Faults: S3FaultProxy,
    /** Partitions and slow links between instances; undefined (with why) where this machine cannot do them. */
    private readonly net: NetworkFaults | { readonly unavailable: string },
    readonly queueUrl: string,
    groupName: string,
    bucket: string,
    instances: InstanceIdentity[],
    private readonly functions: SandboxFunctions,
  ) {
    this.tlsMode = tlsModeOf(options.tls);
    this.groupName = groupName;
    this.bucket = bucket;
    this.current = instances;
    const region = process.env.AWS_REGION ?? 'us-east-1';
    this.autoScaling = new AutoScalingClient({ region, endpoint: shim.endpoint });
    this.upstreamAutoScaling = new AutoScalingClient({ region, endpoint: awsEndpoint });
    this.fleet = new AgentFleet({
      processes: options.processes,
      workDir: path.join(options.workDir, 'agents'),
      bundle: options.bundles.agent,
      bucket,
      awsEndpoint,
      env: {
        AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint,
        AWS_ENDPOINT_URL_S3: s3Faults.endpoint,
        // The stack's signals go to CloudFormation, which the shim plays too.
        AWS_ENDPOINT_URL_CLOUDFORMATION: shim.endpoint,
        ETCD_AWS_STACK_NAME: groupName,
        ETCD_AWS_LAUNCH_HOOK: 'etcd-launch',
        ETCD_AWS_LAUNCH_TIMEOUT_MS: String(SANDBOX_TIMING.launchDeadlineMs),
        ETCD_AWS_LAUNCH_HEARTBEAT_MS: String(SANDBOX_TIMING.launchHeartbeatMs),
        ...(functions.tls
          ? { ETCD_AWS_TLS: this.tlsMode, ETCD_AWS_ISSUER_FUNCTION: functions.tls.pki.issuerFunction, AWS_ENDPOINT_URL_LAMBDA: functions.lambda.endpoint }
          : {}),
        ...options.stackEnv,
      },
      etcdVersion: options.etcdVersion,
      ...('unavailable' in net ? {} : { cgroupFor: (i: InstanceIdentity) => net.cgroupFor(i.instanceId, i.privateIp) }),
    });
  }

  /** The etcd release the launch template installs on instances launched from now on. */
  launchTemplateEtcd(): string {
    return etcdRelease(this.fleet.launchTemplate().etcdVersion).version;
  }

  /**
   * A new launch template version that installs another etcd release: instances launched from now on run
   * it, the running ones keep theirs until they are replaced (as a stack update with a new etcdVersion does).
   */
  setLaunchTemplateEtcd(version: string): void {
    this.fleet.setEtcdRelease(version);
    this.say(`the launch template now installs etcd ${this.launchTemplateEtcd()}; instances launched from now on run it`);
  }

  /**
   * A stack update that changes the launch template (another etcd release, other agent settings), rolled out
   * as CloudFormation's rolling update does it (see testbed/autoscaling/rolling-update.ts): each successor
   * must signal SUCCESS before an old instance goes; a failure or PauseTime rolls the update back.
   */
  async update(change: { etcdVersion?: string; env?: Record<string, string> }): Promise<'complete' | 'rolled-back'> {
    const before = this.fleet.launchTemplate();
    const after = { version: before.version + 1, etcdVersion: change.etcdVersion ?? before.etcdVersion, env: { ...before.env, ...change.env } };
    this.say(`stack update: launch template version ${after.version}${change.etcdVersion ? ` (etcd ${etcdRelease(change.etcdVersion).version})` : ''}${change.env ? ` (agent settings ${JSON.stringify(change.env)})` : ''}`);
    const outcome = await this.shim.rollingUpdate(
      {
        groupName: this.groupName,
        pauseTimeMs: SANDBOX_TIMING.pauseTimeMs,
        instances: async () => (await describeGroupInstances(this.groupName, this.shim.endpoint)).map((i) => i.instanceId).filter((id) => !this.shim.waiting.has(id)),
        isCurrent: (id) => !this.fleet.list().some((n) => n.instance.instanceId === id) || this.fleet.node(id).template.version === this.fleet.launchTemplate().version,
      },
      () => this.fleet.setLaunchTemplate(after),
      () => this.fleet.setLaunchTemplate(before),
    );
    return outcome.result;
  }

  /**
   * A stack update of the `tls` parameter, as the README's migration runs it: the functions take the new
   * setting at once (and the test's own clients with them: the control plane's certificate from `on`), then
   * the rolling update replaces every instance with one launched with it.
   */
  async moveTls(mode: TlsMode): Promise<'complete' | 'rolled-back'> {
    if (!this.functions.tls) throw new Error('this sandbox has no issuer (tls: false): start it with tls: "off" to move it to TLS');
    const before = this.tlsMode;
    const use = (m: TlsMode) => {
      this.tlsMode = m;
      useClientTls(m === 'on' ? this.functions.tls?.client : undefined);
    };
    use(mode);
    const result = await this.update({ env: { ETCD_AWS_TLS: mode } });
    // CloudFormation's rollback takes the functions back to the setting before, with the launch template.
    if (result === 'rolled-back') use(before);
    return result;
  }

  private faults(): NetworkFaults {
    if ('unavailable' in this.net) throw new Error(`network faults are not available: ${this.net.unavailable}`);
    return this.net;
  }

  /**
   * Cuts the network between the instances into `sides` (each instance keeps reaching AWS). The Lambda
   * functions, the NLB and the client writer are on the side of `outsideWith` (by default the largest).
   */
  partition(sides: ReadonlyArray<readonly string[]>, outsideWith?: string): void {
    this.faults().partition(sides, outsideWith);
    this.say(`network partitioned: ${sides.map((s) => `{${s.join(', ')}}`).join(' | ')}; the functions and clients are with ${outsideWith ?? 'the largest side'}`);
  }

  /** Ends the partition: every instance reaches every other again. */
  heal(): void {
    this.faults().heal();
    this.say('network healed');
  }

  /** The instance's peer traffic (etcd's port 2380) is limited to `kbit` kilobits per second: a slow link. */
  slowLink(instanceId: string, kbit: number): void {
    this.faults().limitPeerTraffic(instanceId, kbit);
    this.say(`${instanceId}: peer traffic limited to ${kbit} kbit/s`);
  }

  /** Every instance launched from now on gets a slow link of `kbit` kilobits per second (undefined: none). */
  slowNewInstances(kbit: number | undefined): void {
    if (kbit !== undefined) this.faults();
    this.newInstanceKbit = kbit;
    this.say(kbit === undefined ? 'instances launched from now on get no slow link' : `instances launched from now on get ${kbit} kbit/s of peer traffic`);
  }

  /** Lifts every slow link, also for instances launched from now on. */
  clearSlowLinks(): void {
    this.newInstanceKbit = undefined;
    this.faults().clearLimits();
    this.say('slow links lifted');
  }

  /** The instances stop answering, their processes frozen (SIGSTOP), while EC2 still sees them running. */
  pause(instanceIds: readonly string[]): void {
    for (const id of instanceIds) this.fleet.pause(id);
    this.say(`paused ${instanceIds.join(', ')} (SIGSTOP to agent and etcd; the instances still run)`);
  }

  resume(instanceIds: readonly string[]): void {
    for (const id of instanceIds) this.fleet.resume(id);
    this.say(`resumed ${instanceIds.join(', ')}`);
  }

  /**
   * The instance's etcd can no longer start (a failing disk, a broken binary): it is killed, and every start
   * from now on exits at once with an error. Its agent restarts it, sees a crash loop, and says so.
   */
  breakEtcd(instanceId: string): void {
    const dir = path.join(this.options.workDir, 'broken-etcd');
    mkdirSync(dir, { recursive: true });
    const real = path.join(this.fleet.node(instanceId).etcdBinDir, 'etcd');
    writeFileSync(
      path.join(dir, 'etcd'),
      `#!/bin/sh\n[ "$1" = --version ] && exec ${real} --version\necho '{"level":"fatal","msg":"simulated failure: cannot open the data dir"}' >&2\nexit 1\n`,
      { mode: 0o755 },
    );
    for (const tool of ['etcdctl', 'etcdutl']) {
      const link = path.join(dir, tool);
      if (!existsSync(link)) symlinkSync(path.join(path.dirname(real), tool), link);
    }
    this.fleet.overrideEtcd(instanceId, dir);
    this.fleet.killEtcd(instanceId);
    this.say(`${instanceId}: its etcd crashed and fails on every start from now on`);
  }

  /** The etcd release each running instance's agent runs. */
  etcdOf(instanceId: string): string {
    return this.fleet.node(instanceId).etcdVersion;
  }

  /** Starts the emulator (unless given), creates the group, bucket and queue, and starts every agent. */
  static async start(options: SandboxOptions): Promise<Sandbox> {
    const say = options.onEvent ?? (() => undefined);
    let endpoint = options.awsEndpoint;
    let emulatorPid: number | undefined;
    if (!endpoint) {
      say(`starting the AWS emulator (log: ${path.join(options.workDir, 'moto.log')})`);
      const moto = await startMoto(options.processes, options.workDir);
      endpoint = moto.endpoint;
      emulatorPid = moto.process.pid;
    }
    Object.assign(process.env, emulatorEnv(endpoint));
    const name = options.name ?? 'etcd-sandbox';
    const bucket = `${name}-backups`.toLowerCase();
    await new S3Client({ forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: bucket }));
    const queueUrl = (await new SQSClient({}).send(new CreateQueueCommand({ QueueName: `${name}-lifecycle` }))).QueueUrl ?? '';
    const shim = await startAutoScalingShim({
      upstream: endpoint,
      lifecycleQueueUrl: queueUrl,
      terminationHeartbeatTimeoutMs: SANDBOX_TIMING.terminationHookTimeoutMs,
      launchHook: { name: 'etcd-launch', heartbeatTimeoutMs: SANDBOX_TIMING.launchHookTimeoutMs },
      healthChecks: {
        groupName: name,
        type: options.healthCheckType ?? 'EC2',
        graceMs: SANDBOX_TIMING.healthGraceMs,
        intervalMs: SANDBOX_TIMING.healthIntervalMs,
        unhealthyThreshold: SANDBOX_TIMING.healthThreshold,
      },
      say,
    });
    const s3Faults = await S3FaultProxy.start(endpoint);
    let net: NetworkFaults | { unavailable: string };
    try {
      net = NetworkFaults.create(options.network);
    } catch (error) {
      net = { unavailable: (error as Error).message };
      say(`network faults are not available here (${net.unavailable}); partitions and slow links will fail`);
    }
    say(`creating Auto Scaling group ${name} with ${options.size} instances in ${options.network.vpcCidr}`);
    const group = await createSimulatedGroup({ network: options.network, groupName: name, size: options.size });
    const pki = options.tls === false ? undefined : await TestbedPki.create(name, group.groupName);
    const mode = tlsModeOf(options.tls);
    const names: Record<ControlFunction, string> = pki?.controlFunctions ?? { lifecycle: 'lifecycle', backup: 'backup', reconcile: 'reconcile' };
    // The backup function's environment is the sandbox's, which exists once the service does.
    const late: { sandbox?: Sandbox } = {};
    const lambda = await startLambdaService({
      [names.backup]: { bundle: options.bundles.backup, env: () => late.sandbox?.handlerEnv('backup') ?? {} },
      ...(pki ? { [pki.issuerFunction]: { bundle: options.bundles.issuer, env: () => pki.issuerEnv({ AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint }) } } : {}),
    });
    const tls = pki
      ? {
          pki,
          env: {
            lifecycle: await pki.functionEnv('lifecycle', lambda.endpoint),
            backup: await pki.functionEnv('backup', lambda.endpoint),
            reconcile: await pki.functionEnv('reconcile', lambda.endpoint),
          },
          client: await pki.controlClient(path.join(options.workDir, 'client-tls'), lambda.endpoint),
        }
      : undefined;
    const sandbox = new Sandbox(options, endpoint, shim, s3Faults, net, queueUrl, group.groupName, bucket, [...group.instances], { lambda, names, tls });
    late.sandbox = sandbox;
    sandbox.emulatorPid = emulatorPid;
    if (mode === 'on') say('TLS on: the issuer gives every agent and function its certificates; the test\'s clients use the control plane\'s root certificate');
    else if (pki) say(`TLS ${mode}: the stack has its issuer; everyone talks plaintext`);
    useClientTls(mode === 'on' ? tls?.client : undefined);
    sandbox.startLoops();
    return sandbox;
  }

  private say(message: string): void {
    this.options.onEvent?.(message);
  }

  /** The group's instances in service or launching (not those held in Terminating:Wait), as last seen. */
  instances(): readonly InstanceIdentity[] {
    return this.current;
  }

  endpoints(): string[] {
    return this.current.map((i) => clientUrlOf(i.privateIp));
  }

  private startLoops(): void {
    this.loops.push(this.every(500, () => this.reconcileInstances()));
    this.loops.push(this.every(250, () => Promise.resolve(this.followAgentLogs())));
    this.loops.push(this.every(250, () => this.pollLifecycleQueue()));
    const backupEvery = this.options.backupEveryMs ?? 60_000;
    if (backupEvery > 0) this.loops.push(this.every(backupEvery, () => this.backup({ scheduled: true }).then(() => undefined), true));
    const reconcileEvery = this.options.reconcileEveryMs ?? 20_000;
    if (reconcileEvery > 0) this.loops.push(this.every(reconcileEvery, () => this.reconcile(), true));
  }

  private async every(ms: number, task: () => Promise<void>, waitFirst = false): Promise<void> {
    if (waitFirst) await this.nap(ms);
    while (!this.isStopping()) {
      try {
        await task();
      } catch (error) {
        if (!this.isStopping()) this.say(`warning: ${error instanceof Error ? error.message : String(error)}`);
      }
      await this.nap(ms);
    }
  }

  /** A sleep that ends early when the sandbox stops. */
  private async nap(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.isStopping() && Date.now() < deadline) await sleep(Math.min(100, deadline - Date.now()));
  }

  /** cloud-init and systemd: an agent on every instance in service, restarted when it exits. */
  private async reconcileInstances(): Promise<void> {
    const instances = await describeGroupInstances(this.groupName, this.shim.endpoint);
    if (this.isStopping()) return;
    this.current = instances.filter((i) => !this.dead.has(i.instanceId));
    const known = new Set(this.fleet.list().map((n) => n.instance.instanceId));
    for (const instance of this.current) {
      const id = instance.instanceId;
      if (!known.has(id)) {
        const node = await this.fleet.start(instance);
        this.say(`instance ${id} (${instance.privateIp}) launched with etcd ${node.etcdVersion} (launch template ${node.template.version}); cloud-init starts its agent`);
        // Before its etcd starts (the agent discovers and joins first, seconds): its peer traffic is slow from the start.
        if (this.newInstanceKbit !== undefined) this.slowLink(id, this.newInstanceKbit);
        this.watchExit(node);
        continue;
      }
      const node = this.fleet.node(id);
      const exited = this.exitedAt.get(id);
      if (!node.process?.running() && exited !== undefined && Date.now() - exited >= RESTART_DELAY_MS) {
        this.say(`agent on ${id} had exited; systemd starts it again`);
        this.exitedAt.delete(id);
        this.watchExit(await this.fleet.start(instance));
      }
    }
    // Instances Auto Scaling terminated: their processes end with them.
    const alive = new Set([...this.current.map((i) => i.instanceId), ...this.shim.waiting]);
    for (const node of this.fleet.list()) {
      const id = node.instance.instanceId;
      if (!alive.has(id) && !this.dead.has(id)) {
        this.dead.add(id);
        this.say(`instance ${id} terminated`);
        await this.fleet.kill(id);
      }
    }
  }

  private watchExit(node: { instance: InstanceIdentity; process: { exited: Promise<unknown> } | undefined }): void {
    const id = node.instance.instanceId;
    void node.process?.exited.then(() => {
      if (!this.dead.has(id) && !this.isStopping()) this.exitedAt.set(id, Date.now());
    });
  }

  /**
   * Reads what the agents appended to their JSON logs since the last call: puts their decisions (NOTABLE)
   * on the timeline and keeps what they said about restoring.
   */
  private followAgentLogs(): void {
    for (const node of this.fleet.list()) {
      let fd: number;
      try {
        fd = openSync(node.logFile, 'r');
      } catch {
        continue;
      }
      let chunk: Buffer;
      const from = this.logOffsets.get(node.logFile) ?? 0;
      try {
        const size = fstatSync(fd).size;
        if (size <= from) continue;
        chunk = Buffer.alloc(size - from);
        readSync(fd, chunk, 0, chunk.length, from);
      } finally {
        closeSync(fd);
      }
      // Only whole lines: a partly written one is read again next time.
      const end = chunk.lastIndexOf(0x0a) + 1;
      this.logOffsets.set(node.logFile, from + end);
      for (const line of chunk.subarray(0, end).toString('utf8').split('\n')) {
        if (!line.startsWith('{')) continue;
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue; // etcd's own output shares the log
        }
        const message = typeof entry.message === 'string' ? entry.message : '';
        const key = typeof entry.key === 'string' ? entry.key : undefined;
        if (message === 'restored backup' && key) this.restoreLog.restored.push(key);
        if (message.startsWith('backup is invalid') && key) this.restoreLog.skipped.push({ key, reason: typeof entry.reason === 'string' ? entry.reason : '' });
        if (!NOTABLE.has(message)) continue;
        const detail = ['key', 'reason', 'memberId', 'gone']
          .filter((k) => entry[k] !== undefined)
          .map((k) => `${k} ${typeof entry[k] === 'string' ? entry[k] : JSON.stringify(entry[k])}`)
          .join(', ');
        this.say(`agent ${node.instance.instanceId}: ${message}${detail ? ` (${detail})` : ''}`);
      }
    }
  }

  /** Lambda's SQS event source mapping: batches go to the lifecycle handler; acknowledged records are deleted. */
  private async pollLifecycleQueue(): Promise<void> {
    await pollOnce(this.queueUrl, async (event) => {
      const ids = event.Records.map((r) => JSON.parse(r.body as string) as { EC2InstanceId?: string }).map((b) => b.EC2InstanceId ?? 'test notification');
      this.say(`lifecycle handler invoked for ${ids.join(', ')}`);
      const { result, lines } = await invokeBundle<LifecycleResult>(this.options.bundles.lifecycle, event, this.handlerEnv('lifecycle'));
      for (const line of lines) {
        if (line.message === 'moved leadership off the terminating member') this.say(`lifecycle handler moved leadership ${String(line.from)} → ${String(line.to)} before removing the member`);
        if (line.message === 'the last voter waits for a learner to catch up and vote') {
          this.promoteFirst.waited += 1;
          this.say(`lifecycle handler: the last voter waits for a learner to catch up and vote (learners ${JSON.stringify(line.learners)})`);
        }
        if (line.message === 'promoted a learner before the last voter goes') {
          this.promoteFirst.promoted += 1;
          this.say(`lifecycle handler promoted learner ${String(line.memberId)} before the last voter goes`);
        }
        if (typeof line.message === 'string' && line.message.startsWith('etcd refuses member changes')) {
          this.say("lifecycle handler waits: etcd refuses member changes until every voter has been connected for 5 s");
        }
      }
      if (result.batchItemFailures.length > 0) {
        const why = lines.find((l) => l.level === 'WARN' && typeof l.error === 'string')?.error;
        this.say(`lifecycle handler: ${result.batchItemFailures.length} record(s) failed${typeof why === 'string' ? ` (${why.slice(0, 160)})` : ''}; SQS redelivers them`);
      }
      return result;
    }, { batchSize: 1 });
  }

  private handlerEnv(fn: ControlFunction): NodeJS.ProcessEnv {
    return handlerEnv({
      AWS_ENDPOINT_URL_AUTO_SCALING: this.shim.endpoint,
      // The final backup of a scale-in to zero: the lifecycle function invokes the backup function.
      AWS_ENDPOINT_URL_LAMBDA: this.functions.lambda.endpoint,
      ETCD_AWS_BACKUP_FUNCTION: this.functions.names.backup,
      ETCD_ASG_NAME: this.groupName,
      BACKUP_BUCKET: this.bucket,
      ETCD_AWS_ORPHAN_GRACE_MS: '10000',
      ETCD_AWS_CUT_OFF_GRACE_MS: String(SANDBOX_TIMING.cutOffGraceMs),
      ETCD_AWS_REGISTRATION_FRESH_MS: FAST_TIMING.ETCD_AWS_REGISTRATION_FRESH_MS ?? '4000',
      ETCD_AWS_CALL_TIMEOUT_MS: '3000',
      ...(this.functions.tls ? { ...this.functions.tls.env[fn], ETCD_AWS_TLS: this.tlsMode } : {}),
      ...this.options.stackEnv,
    });
  }

  /**
   * The backup function, as its schedule or a manual invoke runs it. A manual one (the default) that finds
   * another backup in progress (the schedule's) is invoked again once that one is done, as an operator would:
   * the backup it asked for must start now, not before.
   */
  async backup({ scheduled = false } = {}): Promise<BackupSummary> {
    const event = { version: '0', source: 'aws.events', 'detail-type': 'Scheduled Event', time: new Date().toISOString(), detail: {} };
    const once = async (): Promise<BackupSummary> => {
      const { result } = await invokeBundle<BackupSummary>(this.options.bundles.backup, event, this.handlerEnv('backup'));
      if (result.status === 'uploaded') this.say(`backup uploaded: ${result.key} (revision ${result.revision.after}, ${result.size} bytes)`);
      else if (result.reason === 'backup-in-progress') this.say(`backup skipped: ${result.holder} is taking one (lock until ${result.lockExpiresAt})`);
      else this.say(`backup skipped: revision ${result.revision} unchanged since ${result.latestKey}`);
      return result;
    };
    const first = await once();
    if (scheduled || first.status !== 'skipped' || first.reason !== 'backup-in-progress') return first;
    return waitFor(
      'the backup in progress to end and a backup of its own',
      async () => {
        const result = await once();
        return result.status === 'skipped' && result.reason === 'backup-in-progress' ? undefined : result;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
  }

  /** Reconcile's maintenance steps so far (defragmentations, NOSPACE recoveries), skips left out. */
  maintenance(): readonly MaintenanceResult[] {
    return this.maintenanceSteps;
  }

  async reconcile(): Promise<void> {
    const event = { version: '0', source: 'aws.events', 'detail-type': 'Scheduled Event', time: new Date().toISOString(), detail: {} };
    const { result } = await invokeBundle<ReconcileResult>(this.options.bundles.reconcile, event, this.handlerEnv('reconcile'));
    if (result.removed) this.say(`reconcile removed member ${result.removed.name} (${result.removed.reason}): ${result.removed.result}`);
    for (const p of result.promoted) this.say(`reconcile promoted learner ${p.memberId}: ${p.result}`);
    if (result.markedUnhealthy) this.say(`reconcile marked ${result.markedUnhealthy} unhealthy: its agent never registered`);
    const step = result.maintenance;
    if (step && step.action !== 'skipped') {
      this.maintenanceSteps.push(step);
      this.say(`reconcile maintenance: ${step.action}${'detail' in step ? ` (${step.detail})` : ` member ${step.memberId}: ${step.result}`}`);
    }
    if (result.cutOff) {
      this.say(`reconcile found ${result.cutOff.instanceId} cut off from the quorum (${result.cutOff.reason}): member ${result.cutOff.memberId} ${result.cutOff.removal}; instance marked unhealthy`);
    }
  }

  /** Auto Scaling terminates the instance (as a scale-in, a rolling update or a console action does): the hook holds it. */
  async terminate(instanceId: string, decrement = false): Promise<void> {
    this.say(`terminating ${instanceId} through Auto Scaling; the hook holds it in Terminating:Wait`);
    await this.autoScaling.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: decrement }));
  }

  /**
   * The instance dies at once (hardware, kernel, an operator outside Auto Scaling): etcd and the agent are
   * killed, EC2 terminates it, no lifecycle hook runs, and the group's health check replaces it.
   */
  async kill(instanceIds: readonly string[]): Promise<void> {
    for (const id of instanceIds) this.dead.add(id);
    await Promise.all(instanceIds.map((id) => this.fleet.kill(id)));
    this.say(`killed ${instanceIds.join(', ')} (SIGKILL, no lifecycle hook)`);
    for (const id of instanceIds) {
      await this.upstreamAutoScaling.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: id, ShouldDecrementDesiredCapacity: false }));
    }
    this.current = this.current.filter((i) => !instanceIds.includes(i.instanceId));
  }

  /** Changes the group's desired capacity through Auto Scaling (a scale-in goes through the hook). */
  async setCapacity(desired: number): Promise<void> {
    this.say(`setting the group's desired capacity to ${desired}`);
    await this.autoScaling.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: this.groupName, DesiredCapacity: desired }));
  }

  async desiredCapacity(): Promise<number> {
    const out = await this.upstreamAutoScaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [this.groupName] }));
    return out.AutoScalingGroups?.[0]?.DesiredCapacity ?? 0;
  }

  /** The instance whose etcd is the leader, by etcd's own tool. */
  async leader(): Promise<string | undefined> {
    const url = await leaderUrl(this.endpoints());
    return this.current.find((i) => url === clientUrlOf(i.privateIp))?.instanceId;
  }

  /**
   * Waits until the system has converged: the group has its desired capacity, nothing waits in
   * Terminating:Wait or Pending:Wait, and the members are exactly the group's instances, all voting, all answering, one
   * cluster ID.
   */
  async converge(timeoutMs = 120_000): Promise<ClusterSnapshot> {
    let last: ClusterSnapshot | undefined;
    let why = '';
    try {
      return await waitFor(
        'members == group instances, all voting and healthy',
        async () => {
          const desired = await this.desiredCapacity();
          const instances = this.current;
          if (instances.length !== desired) {
            why = `${instances.length} instances in service, desired ${desired}`;
            return undefined;
          }
          if (this.shim.waiting.size > 0) {
            why = `${[...this.shim.waiting].join(', ')} in Terminating:Wait`;
            return undefined;
          }
          if (this.shim.launching.size > 0) {
            why = `${[...this.shim.launching].join(', ')} in Pending:Wait (launching hook not completed)`;
            return undefined;
          }
          const endpoints = instances.map((i) => clientUrlOf(i.privateIp));
          last = await inspectCluster(endpoints);
          why = `members ${JSON.stringify(last.members)}, ${last.answered}/${endpoints.length} answered, cluster IDs ${last.clusterIds.join(',')}`;
          return isConverged(last, instances.map((i) => i.instanceId), endpoints.length) ? last : undefined;
        },
        { timeoutMs, intervalMs: 500 },
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; last seen: ${why}; agent logs in ${path.join(this.options.workDir, 'agents')}`);
    }
  }

  /** What the agents logged about restoring: the backup each restore used and the ones it skipped. */
  restores(): { restored: string[]; skipped: Array<{ key: string; reason: string }> } {
    this.followAgentLogs();
    return { restored: [...this.restoreLog.restored], skipped: [...this.restoreLog.skipped] };
  }

  /** Whether the instance has ended (terminated by Auto Scaling after its hook, or killed). */
  ended(instanceId: string): boolean {
    return this.dead.has(instanceId);
  }

  /** Whether the agent of an instance (any instance the sandbox ever ran) logged a line with this message. */
  agentSaid(instanceId: string, message: string): boolean {
    let text: string;
    try {
      text = readFileSync(this.fleet.node(instanceId).logFile, 'utf8');
    } catch {
      return false;
    }
    return text.split('\n').some((line) => line.includes(`"message":${JSON.stringify(message)}`));
  }

  /** Stops every loop, agent and etcd, the shim and (when the sandbox started it) the emulator. */
  async close(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled(this.loops);
    await this.fleet.closeAll();
    await this.shim.close();
    await this.s3Faults.close();
    if (!('unavailable' in this.net)) this.net.close();
    await this.functions.lambda.close();
    useClientTls(undefined);
  }
}

function tlsModeOf(option: SandboxOptions['tls']): TlsMode {
  if (option === undefined || option === true) return 'on';
  return option === false ? 'off' : option;
}
