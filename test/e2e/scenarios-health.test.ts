import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LONG_QUORUM_LOSS_MS } from '../../sandbox/scenarios.js';
import { Sandbox } from '../../sandbox/world.js';
import { waitFor } from '../../testbed/wait.js';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';
import { uniqueName } from '../support/testbed.js';

// Auto Scaling's health checks, launches and rolling updates, played by the shim as AWS runs them, under the
// sequence-numbered writes. None depends on the etcd release, so CI runs this file once.
let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-health');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('health checks, launches and rollouts', () => {
  it('long-quorum-loss: two of three frozen for 3 minutes; nothing replaced, nothing restored, same cluster, no write lost', async () => {
    const { summary } = await runObserved(sb, 'long-quorum-loss', (observed) => {
      expect(observed.sandbox.shim.unhealthy.size).toBe(0);
    });
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.cluster.restoredFrom).toBeUndefined();
    expect(summary.writes.lost).toBe(0);
    expect(summary.writes.longestUnavailableMs).toBeGreaterThan(LONG_QUORUM_LOSS_MS - 10_000);
  }, LONG_QUORUM_LOSS_MS + 240_000);

  it("with the load balancer's health check instead (the stack's old configuration), the same loss of quorum has Auto Scaling replace every member", async () => {
    // Prepare: a sandbox whose group uses the ELB health check type
    const sandbox = await Sandbox.start({
      size: 3,
      workDir: path.join(sb.bed.workDir, 'elb-health-check'),
      processes: sb.bed.processes,
      network: sb.bed.network,
      bundles: sb.bundles,
      awsEndpoint: process.env.AWS_ENDPOINT_URL,
      name: uniqueName('elb'),
      backupEveryMs: 0,
      reconcileEveryMs: 0,
      healthCheckType: 'ELB',
    });
    try {
      await sandbox.converge(180_000);
      const all = sandbox.instances().map((i) => i.instanceId);
      const [survivor, ...frozen] = all as [string, ...string[]];

      // Act: two of three stop answering; the survivor runs, but etcd's /health fails without quorum
      sandbox.pause(frozen);

      // Assess: every member is unhealthy, the survivor with the data included, and goes into Terminating:Wait
      await waitFor('every member to be found unhealthy', () => all.every((id) => sandbox.shim.unhealthy.has(id)), { timeoutMs: 90_000, intervalMs: 250 });
      await waitFor('the survivor to be terminating', () => sandbox.shim.waiting.has(survivor), { timeoutMs: 30_000, intervalMs: 250 });
    } finally {
      await sandbox.close();
    }
  });

  it('unhealthy-node: a member whose etcd keeps failing is marked unhealthy by its agent and replaced; same cluster, no write lost', async () => {
    const { summary, observed } = await runObserved(sb, 'unhealthy-node');
    const victim = observed.sandbox.shim.calls.find((c) => c.action === 'SetInstanceHealth')?.params.InstanceId;
    expect(victim).toMatch(/^i-/);
    expect(observed.instances).not.toContain(victim);
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
  });

  it('rolling-update: every instance replaced after its successor signalled; a broken agent stops the update at its first successor and it rolls back; no write lost', async () => {
    const { summary, observed } = await runObserved(sb, 'rolling-update');
    const signals = observed.sandbox.shim.signals.log.filter((s) => s.accepted);
    // One SUCCESS per instance the good update replaced; the broken agent never signalled, and the rollback only removed its surplus instance.
    expect(signals.filter((s) => s.status === 'SUCCESS')).toHaveLength(3);
    expect(observed.sandbox.shim.abandoned.size).toBeGreaterThanOrEqual(1);
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
  });
});
