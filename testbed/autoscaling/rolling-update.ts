import { AutoScalingClient, DescribeAutoScalingGroupsCommand, SetDesiredCapacityCommand } from '@aws-sdk/client-auto-scaling';
import { waitFor } from '../wait.js';
import type { TerminationHook } from './termination-hook.js';

/**
 * CloudFormation's SignalResource for the group, as a rolling update with WaitOnResourceSignals receives it:
 * while an update runs, every signal is kept (by unique ID, the instance ID); outside an update CloudFormation
 * refuses it ("can not be signaled"), as AWS does once the resource is no longer updating.
 */
export class StackSignals {
  private updating = false;
  private readonly received = new Map<string, 'SUCCESS' | 'FAILURE'>();
  readonly log: Array<{ readonly uniqueId: string; readonly status: string; readonly accepted: boolean }> = [];

  /** Handles one SignalResource call; false when nothing waits for signals. */
  signal(uniqueId: string, status: string): boolean {
    const accepted = this.updating && (status === 'SUCCESS' || status === 'FAILURE');
    this.log.push({ uniqueId, status, accepted });
    if (accepted) this.received.set(uniqueId, status);
    return accepted;
  }

  begin(): void {
    this.updating = true;
    this.received.clear();
  }

  end(): void {
    this.updating = false;
  }

  /** The instance's signal, or 'timeout' after PauseTime. */
  async wait(uniqueId: string, timeoutMs: number): Promise<'SUCCESS' | 'FAILURE' | 'timeout'> {
    try {
      return await waitFor(`a signal from ${uniqueId}`, () => this.received.get(uniqueId), { timeoutMs, intervalMs: 100 });
    } catch {
      return 'timeout';
    }
  }
}

export interface RollingUpdateOptions {
  readonly groupName: string;
  readonly upstream: AutoScalingClient;
  readonly termination: TerminationHook;
  readonly signals: StackSignals;
  /** The processes the update suspends (HealthCheck, ReplaceUnhealthy, AZRebalance, ...), resumed afterwards. */
  readonly suspended: Set<string>;
  readonly suspend: readonly string[];
  /** How long a new instance may take to signal (PauseTime). */
  readonly pauseTimeMs: number;
  /** The group's instances (in service or launching, not terminating), as Auto Scaling describes them. */
  readonly instances: () => Promise<string[]>;
  /** True when the instance was launched from the launch template the group uses now. */
  readonly isCurrent: (instanceId: string) => boolean;
  /** True while the instance waits in Pending:Wait. */
  readonly isLaunching: (instanceId: string) => boolean;
  readonly say: (message: string) => void;
}

export type RollingUpdateResult = { readonly result: 'complete' } | { readonly result: 'rolled-back'; readonly reason: string };

class UpdateFailed extends Error {}

/**
 * A stack update that changes the group's launch template, as CloudFormation's AutoScalingRollingUpdate runs
 * it with MaxBatchSize 1, MinInstancesInService = the cluster size and WaitOnResourceSignals: for each
 * instance of the old template, one more instance is launched (desired capacity + 1) and must signal SUCCESS
 * within PauseTime; then one old instance is terminated (through the terminating hook, desired capacity - 1).
 * A FAILURE signal or the PauseTime ends the update: the template is reverted and the rollback replaces the
 * instances of the new template the same way, except those above the original capacity (the failed
 * successor, or what the group launched in its place), which are only terminated.
 */
export async function rollingUpdate(options: RollingUpdateOptions, apply: () => void, revert: () => void): Promise<RollingUpdateResult> {
  for (const p of options.suspend) options.suspended.add(p);
  options.signals.begin();
  const capacity = await desired(options);
  try {
    apply();
    try {
      await replaceAll(options, capacity);
      options.say('the rolling update completed');
      return { result: 'complete' };
    } catch (error) {
      if (!(error instanceof UpdateFailed)) throw error;
      options.say(`the rolling update failed (${error.message}); CloudFormation rolls back to the previous launch template`);
      revert();
      await replaceAll(options, capacity);
      options.say('the rollback completed');
      return { result: 'rolled-back', reason: error.message };
    }
  } finally {
    options.signals.end();
    for (const p of options.suspend) options.suspended.delete(p);
  }
}

async function desired(options: RollingUpdateOptions): Promise<number> {
  const out = await options.upstream.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [options.groupName] }));
  return out.AutoScalingGroups?.[0]?.DesiredCapacity ?? 0;
}

/** Replaces, one at a time, every instance not launched from the current template; none above `capacity` is replaced. */
async function replaceAll(options: RollingUpdateOptions, capacity: number): Promise<void> {
  for (;;) {
    const ids = await options.instances();
    const old = ids.filter((id) => !options.isCurrent(id));
    if ((await desired(options)) > capacity) {
      // Above the original capacity (a failed step's successor, or what the group launched in its place when
      // its launch was abandoned): it goes without a successor of its own; one still launching first (it
      // never became a member), then one of the old template.
      const surplus = [...old.filter((id) => options.isLaunching(id)), ...ids.filter((id) => options.isLaunching(id)), ...old, ...ids.slice().reverse()][0];
      if (surplus === undefined) return;
      options.say(`rolling update: terminating ${surplus}, launched beyond the group's capacity`);
      await terminate(options, surplus);
      continue;
    }
    if (old.length === 0) return;
    const before = new Set(ids);
    await options.upstream.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: options.groupName, DesiredCapacity: (await desired(options)) + 1 }));
    const successor = await waitFor(
      'the successor instance to launch',
      async () => (await options.instances()).find((id) => !before.has(id)),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    options.say(`rolling update: launched ${successor}; waiting up to ${Math.round(options.pauseTimeMs / 1000)} s for its signal`);
    const status = await options.signals.wait(successor, options.pauseTimeMs);
    if (status !== 'SUCCESS') {
      throw new UpdateFailed(status === 'timeout' ? `no signal from ${successor} within PauseTime` : `${successor} signalled FAILURE`);
    }
    const victim = old[0] as string;
    options.say(`rolling update: ${successor} signalled SUCCESS; terminating ${victim}`);
    await terminate(options, victim);
  }
}

async function terminate(options: RollingUpdateOptions, instanceId: string): Promise<void> {
  // A successor whose launch was abandoned is gone already (and replaced by the group).
  if (!(await options.instances()).includes(instanceId)) return;
  await options.termination.begin(options.groupName, instanceId, true);
  await waitFor(
    `${instanceId} to be terminated`,
    async () => !options.termination.isWaiting(instanceId) && !(await options.instances()).includes(instanceId),
    { timeoutMs: 300_000, intervalMs: 200 },
  );
}
