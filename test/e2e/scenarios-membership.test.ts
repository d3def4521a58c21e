import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

// `npm run sandbox -- <scenario>` as the e2e suite: the agents, the lifecycle handler through SQS and the
// shim's termination hook, on real etcd and the emulator. Invariants are checked by the scenario and again,
// independently, by runObserved.
let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-membership');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('membership scenarios', () => {
  it('cold-start: three empty instances build one cluster of three voting members', async () => {
    const { summary } = await runObserved(sb, 'cold-start');
    expect(summary.cluster.members).toHaveLength(3);
    expect(summary.writes.lost).toBe(0);
  });

  it('replace-one: the hook removes the member exactly once, the replacement joins the same cluster, no write lost', async () => {
    const { summary } = await runObserved(sb, 'replace-one', (observed) => {
      const completions = observed.sandbox.shim.calls.filter((c) => c.action === 'CompleteLifecycleAction' && c.params.LifecycleHookName === 'etcd-terminate');
      expect(completions).toHaveLength(1);
      expect(completions[0]?.params.LifecycleActionResult).toBe('CONTINUE');
    });
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
  });

  it('rolling-replace: every instance replaced one at a time, same cluster, available throughout, no write lost', async () => {
    const { summary, observed } = await runObserved(sb, 'rolling-replace', (o) => {
      expect(o.sandbox.shim.calls.filter((c) => c.action === 'CompleteLifecycleAction' && c.params.LifecycleHookName === 'etcd-terminate')).toHaveLength(3);
    });
    const originals = summary.timeline.filter((e) => e.event.startsWith('terminating ')).map((e) => e.event.split(' ')[1]);
    expect(originals).toHaveLength(3);
    for (const id of originals) expect(observed.instances).not.toContain(id);
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
  });
});
