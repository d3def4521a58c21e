import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, DescribeAutoScalingInstancesCommand } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { HealthChecks, type HealthCheckOptions } from './autoscaling/health-checks.js';
import { LaunchHook } from './autoscaling/launch-hook.js';
import { CLOUDFORMATION_NS, instanceIdsIn, rewriteInstanceField, sendResult, sendValidationError, type ActionParams } from './autoscaling/protocol.js';
import { rollingUpdate, StackSignals, type RollingUpdateOptions, type RollingUpdateResult } from './autoscaling/rolling-update.js';
import { TerminationHook } from './autoscaling/termination-hook.js';

/** One lifecycle call the shim answered itself. */
export interface LifecycleCall {
  readonly action: 'CompleteLifecycleAction' | 'RecordLifecycleActionHeartbeat' | 'SetInstanceHealth';
  readonly params: Readonly<Record<string, string>>;
}

export interface AutoScalingShim {
  /** Value for AWS_ENDPOINT_URL_AUTO_SCALING (and AWS_ENDPOINT_URL_CLOUDFORMATION, for the stack's signals). */
  readonly endpoint: string;
  readonly calls: readonly LifecycleCall[];
  /**
   * What TerminateInstanceInAutoScalingGroup does with a termination lifecycle hook: the instance enters
   * Terminating:Wait (as every Describe through the shim reports it) and the hook's message goes to the
   * queue. CompleteLifecycleAction then really terminates it; the group launches a replacement unless
   * `decrement` (ShouldDecrementDesiredCapacity, or a scale-in) lowered the desired capacity instead.
   */
  beginTermination(groupName: string, instanceId: string, decrement?: boolean): Promise<string>;
  /** Instances in Terminating:Wait. */
  readonly waiting: ReadonlySet<string>;
  /** Instances in Pending:Wait (the launching hook). */
  readonly launching: ReadonlySet<string>;
  /** Instances whose launch was abandoned. */
  readonly abandoned: ReadonlySet<string>;
  /** Instances the health checks (or SetInstanceHealth) found unhealthy. */
  readonly unhealthy: ReadonlySet<string>;
  /** The stack's signals (SignalResource), as CloudFormation received them. */
  readonly signals: StackSignals;
  /** A CloudFormation rolling update of the group (see rollingUpdate). */
  rollingUpdate(
    options: Pick<RollingUpdateOptions, 'groupName' | 'pauseTimeMs' | 'instances' | 'isCurrent'>,
    apply: () => void,
    revert: () => void,
  ): Promise<RollingUpdateResult>;
  close(): Promise<void>;
}

/** The processes CloudFormation's rolling update suspends (AWS's recommendation for AutoScalingRollingUpdate). */
const ROLLING_UPDATE_SUSPENDS = ['HealthCheck', 'ReplaceUnhealthy', 'AZRebalance', 'AlarmNotification', 'ScheduledActions'];

/**
 * Which instances a scale-in terminates: AWS's default policy balances Availability Zones first (take from
 * the zone with the most instances), then prefers the oldest launch configuration; here, among equals, the
 * newest instance (the highest ID), so a scale-in after a scale-out removes what it added.
 */
export function scaleInVictims(instances: ReadonlyArray<{ InstanceId?: string; AvailabilityZone?: string }>, count: number): string[] {
  const left = instances.map((i) => ({ id: i.InstanceId ?? '', zone: i.AvailabilityZone ?? '' }));
  const victims: string[] = [];
  for (let n = 0; n < count && left.length > 0; n += 1) {
    const perZone = new Map<string, number>();
    for (const i of left) perZone.set(i.zone, (perZone.get(i.zone) ?? 0) + 1);
    const most = Math.max(...perZone.values());
    const candidates = left.filter((i) => perZone.get(i.zone) === most).sort((a, b) => b.id.localeCompare(a.id));
    const victim = candidates[0]!;
    victims.push(victim.id);
    left.splice(left.indexOf(victim), 1);
  }
  return victims;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The part of Auto Scaling (and CloudFormation) the emulator lacks, played on one machine, one module per
 * behaviour (testbed/autoscaling/): the terminating hook (TerminateInstanceInAutoScalingGroup and a scale-in
 * through SetDesiredCapacity put instances in Terminating:Wait and notify the queue), the launching hook (new
 * instances wait in Pending:Wait until their agent completes it), health checks of the configured type with
 * Auto Scaling's replacement, and CloudFormation's rolling update with its resource signals. Lifecycle calls
 * are recorded and answered as AWS does, including "No active Lifecycle Action found". Every other call is
 * passed on to the emulator, with Describe answers showing the states the modules hold. Handlers and agents
 * reach it through the SDK's AWS_ENDPOINT_URL_AUTO_SCALING, so their code is the code that runs in AWS.
 */
export async function startAutoScalingShim(options: {
  upstream: string;
  onComplete?: (params: Readonly<Record<string, string>>) => Promise<void> | void;
  /** The queue the terminating hook notifies: enables the terminating hook. */
  lifecycleQueueUrl?: string;
  hookName?: string;
  /** The terminating hook's heartbeat timeout (its default result is CONTINUE); AWS's default is an hour. */
  terminationHeartbeatTimeoutMs?: number;
  /** Enables the launching hook (default result ABANDON). */
  launchHook?: { readonly name: string; readonly heartbeatTimeoutMs: number };
  /** Enables health checks and the replacement of unhealthy instances of this group. */
  healthChecks?: HealthCheckOptions & { readonly groupName: string };
  /** Timeline output. */
  say?: (message: string) => void;
}): Promise<AutoScalingShim> {
  const say = options.say ?? (() => undefined);
  const calls: LifecycleCall[] = [];
  const recordedTokens = new Set<string>();
  const suspended = new Set<string>();
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const upstream = new AutoScalingClient({ region, endpoint: options.upstream });
  const ec2 = new EC2Client({ region, endpoint: options.upstream });
  const launch = options.launchHook ? new LaunchHook({ upstream, hookName: options.launchHook.name, heartbeatTimeoutMs: options.launchHook.heartbeatTimeoutMs, say }) : undefined;
  const termination = options.lifecycleQueueUrl
    ? new TerminationHook({
        upstream,
        region,
        upstreamEndpoint: options.upstream,
        queueUrl: options.lifecycleQueueUrl,
        hookName: options.hookName ?? 'etcd-terminate',
        heartbeatTimeoutMs: options.terminationHeartbeatTimeoutMs ?? 3_600_000,
        // An instance terminated while it launches has no launching action left.
        onBegin: (instanceId) => launch?.forget(instanceId),
        say,
      })
    : undefined;
  const health = options.healthChecks
    ? new HealthChecks({ ...options.healthChecks, upstream, ec2, termination, suspended, isLaunching: (id) => launch?.isPending(id) ?? false, say })
    : undefined;
  const signals = new StackSignals();

  async function groupOf(instanceId: string): Promise<string | undefined> {
    const out = await upstream.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] }));
    return out.AutoScalingInstances?.[0]?.AutoScalingGroupName;
  }

  /** Complete or heartbeat: the hook that owns the call answers; without one, each token is accepted once (recorded). */
  async function lifecycleCall(action: 'CompleteLifecycleAction' | 'RecordLifecycleActionHeartbeat', params: ActionParams): Promise<boolean> {
    const complete = action === 'CompleteLifecycleAction';
    if (launch?.owns(params)) return complete ? launch.complete(params) : launch.heartbeat(params);
    if (termination?.owns(params)) {
      const done = complete ? await termination.complete(params) : termination.heartbeat(params);
      if (done && complete) await options.onComplete?.(params as Record<string, string>);
      return done;
    }
    const token = params.LifecycleActionToken ?? '';
    if (recordedTokens.has(token)) return false;
    if (complete) {
      recordedTokens.add(token);
      await options.onComplete?.(params as Record<string, string>);
    }
    return true;
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      const raw = await body(req);
      const params = Object.fromEntries(new URLSearchParams(raw.toString('utf8')));
      const action = params.Action;
      if (action === 'CompleteLifecycleAction' || action === 'RecordLifecycleActionHeartbeat') {
        calls.push({ action, params });
        if (await lifecycleCall(action, params)) sendResult(res, action);
        else {
          const which = params.LifecycleActionToken ? `token ${params.LifecycleActionToken}` : `instance ID ${params.InstanceId ?? ''}`;
          sendValidationError(res, `No active Lifecycle Action found with ${which}`);
        }
        return;
      }
      if (action === 'SetInstanceHealth' && health) {
        calls.push({ action, params });
        await health.setHealth(params.InstanceId ?? '', params.HealthStatus ?? '', params.ShouldRespectGracePeriod !== 'false');
        sendResult(res, action);
        return;
      }
      if (action === 'SignalResource') {
        if (signals.signal(params.UniqueId ?? '', params.Status ?? '')) sendResult(res, action, '', CLOUDFORMATION_NS);
        else sendValidationError(res, `Resource ${params.LogicalResourceId ?? ''} is in UPDATE_COMPLETE state and can not be signaled`, CLOUDFORMATION_NS);
        return;
      }
      if (termination && action === 'TerminateInstanceInAutoScalingGroup') {
        // The group has a terminating hook: the instance waits for the lifecycle handler instead of going.
        const instanceId = params.InstanceId ?? '';
        const groupName = await groupOf(instanceId);
        if (!groupName) {
          sendValidationError(res, `Instance Id not found - No managed instance found for instance ID: ${instanceId}`);
          return;
        }
        await termination.begin(groupName, instanceId, params.ShouldDecrementDesiredCapacity === 'true');
        sendResult(res, action, `<Activity><ActivityId>${instanceId}</ActivityId><AutoScalingGroupName>${groupName}</AutoScalingGroupName><StatusCode>InProgress</StatusCode></Activity>`);
        return;
      }
      if (termination && action === 'SetDesiredCapacity') {
        // A scale-in through the hook: the surplus instances wait for the lifecycle handler, each lowering
        // the desired capacity when it goes. A scale-out goes straight to the emulator.
        const groupName = params.AutoScalingGroupName ?? '';
        const wanted = Number(params.DesiredCapacity);
        const group = (await upstream.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] }))).AutoScalingGroups?.[0];
        const staying = (group?.Instances ?? []).filter((i) => !termination.isWaiting(i.InstanceId ?? ''));
        if (group && Number.isInteger(wanted) && wanted < staying.length) {
          for (const victim of scaleInVictims(staying, staying.length - wanted)) await termination.begin(groupName, victim, true);
          sendResult(res, action);
          return;
        }
      }
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter((e): e is [string, string] => typeof e[1] === 'string' && e[0] !== 'host' && e[0] !== 'content-length'),
      );
      const answer = await fetch(`${options.upstream}${req.url ?? '/'}`, { method: req.method ?? 'POST', headers, body: raw.length > 0 ? raw : undefined });
      const hopByHop = new Set(['content-encoding', 'transfer-encoding', 'content-length', 'connection', 'keep-alive']);
      let out = Buffer.from(await answer.arrayBuffer());
      if (action === 'DescribeAutoScalingGroups' || action === 'DescribeAutoScalingInstances') {
        let xml = out.toString('utf8');
        const ids = instanceIdsIn(xml);
        launch?.observe(ids);
        for (const id of ids) {
          if (termination?.isWaiting(id)) xml = rewriteInstanceField(xml, id, 'LifecycleState', 'Terminating:Wait');
          else if (launch?.isPending(id)) xml = rewriteInstanceField(xml, id, 'LifecycleState', 'Pending:Wait');
          if (health?.isUnhealthy(id)) xml = rewriteInstanceField(xml, id, 'HealthStatus', 'Unhealthy');
        }
        out = Buffer.from(xml, 'utf8');
      }
      res.writeHead(answer.status, Object.fromEntries([...answer.headers.entries()].filter(([k]) => !hopByHop.has(k)))).end(out);
    })().catch((error: unknown) => {
      res.writeHead(500).end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  // The clocks of the hooks' timeouts and of the health checks.
  const state = { closing: false };
  const closing = () => state.closing;
  const ticker = (async () => {
    while (!closing()) {
      try {
        await termination?.tick();
        await launch?.tick();
        if (health && options.healthChecks) await health.tick(options.healthChecks.groupName);
      } catch (error) {
        if (!closing()) say(`warning: Auto Scaling shim: ${(error as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();

  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    get waiting(): ReadonlySet<string> {
      return termination?.waiting() ?? new Set();
    },
    get launching(): ReadonlySet<string> {
      return launch?.launching() ?? new Set();
    },
    get abandoned(): ReadonlySet<string> {
      return launch?.abandoned ?? new Set();
    },
    get unhealthy(): ReadonlySet<string> {
      return health?.unhealthyInstances() ?? new Set();
    },
    signals,
    beginTermination: (groupName, instanceId, decrement = false) => {
      if (!termination) throw new Error('the shim was started without a lifecycle queue');
      return termination.begin(groupName, instanceId, decrement);
    },
    rollingUpdate: (update, apply, revert) => {
      if (!termination) throw new Error('the shim was started without a lifecycle queue');
      return rollingUpdate(
        { ...update, upstream, termination, signals, suspended, suspend: ROLLING_UPDATE_SUSPENDS, isLaunching: (id) => launch?.isPending(id) ?? false, say },
        apply,
        revert,
      );
    },
    close: async () => {
      state.closing = true;
      await ticker;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
