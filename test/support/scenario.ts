import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { runScenario, type ScenarioSummary } from '../../sandbox/scenarios.js';
import { Sandbox, bundlesIn, type Bundles, type SandboxOptions } from '../../sandbox/world.js';
import { build } from '../../scripts/build.mjs';
import { inspectCluster } from '../../testbed/agents.js';
import { describeGroupInstances } from '../../testbed/aws-world.js';
import { etcdctlBin } from '../../testbed/tools.js';
import { openBed, uniqueName, type Bed } from './testbed.js';
import { clientUrlOf, etcdctlTlsArgs } from '../../testbed/pki.js';

const run = promisify(execFile);

export interface ScenarioBed {
  readonly bed: Bed;
  readonly bundles: Bundles;
}

/** A test bed with the bundles built into it, as CI builds them. */
export async function scenarioBed(label: string): Promise<ScenarioBed> {
  const bed = openBed(label);
  const dist = path.join(bed.workDir, 'dist');
  await build({ outDir: dist, quiet: true });
  return { bed, bundles: bundlesIn(dist) };
}

/**
 * A sandbox of three instances on the shared bed with no backup or reconcile schedule: for a test that drives
 * its own stack updates and closes the sandbox itself.
 */
export function quietSandbox({ bed, bundles }: ScenarioBed, label: string, options: Partial<SandboxOptions> = {}): Promise<Sandbox> {
  return Sandbox.start({
    size: 3,
    workDir: path.join(bed.workDir, label),
    processes: bed.processes,
    network: bed.network,
    bundles,
    awsEndpoint: process.env.AWS_ENDPOINT_URL,
    name: uniqueName(label),
    backupEveryMs: 0,
    reconcileEveryMs: 0,
    ...options,
  });
}

export interface Observed {
  /** What the test saw itself, before the sandbox closed: the group's instances from the emulator, etcd's members from etcdctl. */
  readonly instances: string[];
  readonly members: Array<{ name: string; isLearner: boolean }>;
  readonly clusterIds: string[];
  /** Keys under the writer's prefix, counted by etcdctl. */
  readonly keysStored: number;
  readonly sandbox: Sandbox;
}

/**
 * Runs a scenario on the shared emulator and, before its sandbox closes, looks at the result with etcd's
 * and the emulator's own tools (not the scenario's code). Fails with the timeline when an invariant broke.
 */
export async function runObserved(
  { bed, bundles }: ScenarioBed,
  name: string,
  more?: (observed: Observed, summary: ScenarioSummary) => Promise<void> | void,
): Promise<{ summary: ScenarioSummary; observed: Observed }> {
  let observed: Observed | undefined;
  const summary = await runScenario(name, {
    workDir: path.join(bed.workDir, name),
    processes: bed.processes,
    network: bed.network,
    bundles,
    awsEndpoint: process.env.AWS_ENDPOINT_URL,
    name: uniqueName(name.replace('corrupt-latest-backup', 'corrupt')),
    start: (o) => Sandbox.start(o),
    inspect: async (sandbox, s) => {
      // Straight from the emulator, not through the sandbox or its shim.
      const inService = await describeGroupInstances(sandbox.groupName);
      const urls = inService.map((i) => clientUrlOf(i.privateIp));
      const cluster = await inspectCluster(urls);
      const { stdout } = await run(etcdctlBin(), [...etcdctlTlsArgs(), '--endpoints', urls.join(','), 'get', s.writes.prefix, '--prefix', '--keys-only', '-w', 'json']);
      const count = Number(/"count":(\d+)/.exec(stdout)?.[1] ?? '0');
      observed = {
        instances: inService.map((i) => i.instanceId).sort(),
        members: cluster.members.map((m) => ({ name: m.name, isLearner: m.isLearner })),
        clusterIds: cluster.clusterIds.map((id) => BigInt(id).toString(16)),
        keysStored: count,
        sandbox,
      };
      await more?.(observed, s);
    },
  });
  const story = summary.timeline.map((e) => `${(e.atMs / 1000).toFixed(1)}s ${e.event}`).join('\n');
  expect(summary.violations, `scenario ${name}:\n${story}`).toEqual([]);
  expect(summary.ok).toBe(true);
  if (!observed) throw new Error('the scenario finished without its inspection');
  // Invariants, seen independently: members == the group's instances, all voting, one cluster.
  expect(observed.members.map((m) => m.name).sort()).toEqual(observed.instances);
  expect(observed.members.every((m) => !m.isLearner)).toBe(true);
  expect(observed.clusterIds).toEqual([summary.cluster.after]);
  // Every acknowledged write the summary calls present is in etcd (etcdctl counts the keys).
  expect(observed.keysStored).toBeGreaterThanOrEqual(summary.writes.acknowledged - summary.writes.lost);
  return { summary, observed };
}
