import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-failures');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('failure scenarios', () => {
  it('kill-leader: a new leader takes over, the dead member is replaced, same cluster, no write lost', async () => {
    const { summary } = await runObserved(sb, 'kill-leader');
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
    expect(summary.cluster.restoredFrom).toBeUndefined();
  });
});
