import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

// Network partitions and slow links between the instances (testbed/net-faults.ts), under the
// sequence-numbered writes, each instance still reaching AWS.
let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-partition');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('partitions and slow links', () => {
  it('partition-one: a member cut off during a rolling update is removed and replaced from the quorum side; the update completes; no force, no loss', async () => {
    const { summary } = await runObserved(sb, 'partition-one');
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
    expect(summary.timeline.some((t) => /the rolling update completed/.test(t.event))).toBe(true);
  }, 420_000);

  it('partition-minority-long: two of five cut off for longer than every grace period never force; both are replaced, one at a time', async () => {
    const { summary } = await runObserved(sb, 'partition-minority-long');
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
    expect(summary.cluster.members).toHaveLength(5);
  }, 420_000);

  it('slow-learner-rolling-replace: the last original voter waits for a slow learner to be promoted; never only learners, never a quorum lost', async () => {
    const { summary, observed } = await runObserved(sb, 'slow-learner-rolling-replace');
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
    expect(observed.sandbox.promoteFirst.waited).toBeGreaterThan(0);
    expect(observed.sandbox.promoteFirst.promoted).toBeGreaterThan(0);
    // The quorum watch (through every running instance) found no stretch without a quorum: no violation.
    expect(summary.timeline.some((t) => /longest stretch without a quorum/.test(t.event))).toBe(true);
  }, 420_000);
});
