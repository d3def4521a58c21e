import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-scaling');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('scaling scenarios', () => {
  it('scale-out: 3 → 5, the new members join as learners and are promoted, same cluster, no write lost', async () => {
    const { summary, observed } = await runObserved(sb, 'scale-out');
    expect(observed.members).toHaveLength(5);
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
  });

  it('scale-in: 5 → 3 through the hook, both members removed before their instances go, no write lost', async () => {
    const { summary, observed } = await runObserved(sb, 'scale-in', async (o) => {
      const completions = o.sandbox.shim.calls.filter((c) => c.action === 'CompleteLifecycleAction' && c.params.LifecycleHookName === 'etcd-terminate');
      expect(completions).toHaveLength(2);
      expect(await o.sandbox.desiredCapacity()).toBe(3);
    });
    expect(observed.members).toHaveLength(3);
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
  });
});
