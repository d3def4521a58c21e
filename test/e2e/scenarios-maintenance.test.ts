import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { FILL_QUOTA_BYTES } from '../../sandbox/scenarios.js';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';
import { etcdClusterTls } from '../../testbed/pki.js';

let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-maintenance');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('maintenance scenarios', () => {
  it('fill-quota: a cluster that reached its space quota accepts writes again without an operator, and loses no acknowledged write', async () => {
    const { summary } = await runObserved(sb, 'fill-quota', async (o) => {
      // Reconcile did it: compaction, every member defragmented, the alarm disarmed.
      const recovered = o.sandbox.maintenance().find((m) => m.action === 'recovered-space');
      expect(recovered).toMatchObject({ action: 'recovered-space', disarmed: true });
      if (recovered?.action !== 'recovered-space') throw new Error('no recovery');
      expect(recovered.defragmented).toHaveLength(3);
      const etcd = new Etcd3Cluster(o.sandbox.endpoints(), { dialTimeoutMs: 1000, callTimeoutMs: 3000, ...etcdClusterTls() });
      try {
        expect(await etcd.alarms()).toEqual([]);
        // Every member's file is back under the quota's recovery threshold.
        for (const endpoint of o.sandbox.endpoints()) expect((await etcd.status(endpoint)).dbSize).toBeLessThan(FILL_QUOTA_BYTES * 0.8);
      } finally {
        etcd.close();
      }
    });
    expect(summary.ok).toBe(true);
    expect(summary.writes.lost).toBe(0);
    expect(summary.cluster.after).toBe(summary.cluster.before);
  });
});
