import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLAKY_RESTORE_CUTS } from '../../sandbox/scenarios.js';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-restore');
});
afterAll(async () => {
  await sb.bed.dispose();
});

async function snapshotsIn(bucket: string): Promise<string[]> {
  const out = await new S3Client({ forcePathStyle: true }).send(new ListObjectsV2Command({ Bucket: bucket }));
  return (out.Contents ?? []).map((o) => o.Key ?? '').filter((k) => k.endsWith('.db')).sort();
}

describe('restore scenarios', () => {
  it('total-loss: a new cluster restored from the newest backup holds every write it held; only later ones are lost', async () => {
    let snapshots: string[] = [];
    const { summary } = await runObserved(sb, 'total-loss', async (o) => {
      snapshots = await snapshotsIn(o.sandbox.bucket);
    });
    expect(summary.cluster.restoredFrom).toBe(snapshots.at(-1));
    expect(summary.cluster.after).not.toBe(summary.cluster.before);
    // The measured RPO: the writes acknowledged after the backup, and only those.
    expect(summary.rpo?.writesAfterBackup).toBe(summary.writes.lost);
    expect(summary.writes.lost).toBeGreaterThan(0);
  });

  it('corrupt-latest-backup: the corrupt newest backup is detected and skipped, the previous one restored', async () => {
    let snapshots: string[] = [];
    const { summary } = await runObserved(sb, 'corrupt-latest-backup', async (o) => {
      snapshots = await snapshotsIn(o.sandbox.bucket);
    });
    expect(snapshots.length).toBeGreaterThanOrEqual(2);
    expect(summary.cluster.restoredFrom).toBe(snapshots.at(-2));
    expect(summary.cluster.skippedBackups.map((s) => s.key)).toContain(snapshots.at(-1));
    expect(summary.cluster.skippedBackups.find((s) => s.key === snapshots.at(-1))?.reason).toMatch(/sha|checksum|digest|integrity/i);
  });

  it('flaky-restore: downloads of the newest backup that break off are retried, across agent restarts; no older backup is restored', async () => {
    let snapshots: string[] = [];
    const { summary } = await runObserved(sb, 'flaky-restore', async (o) => {
      snapshots = await snapshotsIn(o.sandbox.bucket);
      // The fault happened: every planned cut, each short of the whole object.
      const cuts = o.sandbox.s3Faults.cuts.filter((c) => c.key === snapshots.at(-1));
      expect(cuts).toHaveLength(FLAKY_RESTORE_CUTS);
      for (const c of cuts) expect(c.sentBytes).toBeLessThan(c.ofBytes);
    });
    expect(snapshots.length).toBeGreaterThanOrEqual(2);
    expect(summary.cluster.restoredFrom).toBe(snapshots.at(-1));
    expect(summary.cluster.skippedBackups).toEqual([]);
    // More cuts than one agent run retries: an agent gave up, exited and was started again.
    expect(summary.timeline.some((t) => /had exited; systemd starts it again/.test(t.event))).toBe(true);
  });
});
