import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { backupKeys, pairBackups, selectForDeletion, unchangedSince, type BackupMetadata } from '../../core/domain/backups.js';
import { SnapshotIntegrityError } from '../../core/errors.js';
import { verifySnapshotStream } from '../../core/snapshot-verifier.js';

/** Bytes shaped like an etcd snapshot: pages of 512 bytes, then the SHA-256 of them. */
function fakeSnapshot(pages: number): Buffer {
  const body = randomBytes(pages * 512);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}
function chunks(buf: Buffer, size: number): AsyncIterable<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

describe('snapshot verification while streaming', () => {
  it.each([1, 7, 31, 32, 33, 4096])('accepts a whole snapshot read in chunks of %i bytes, and hashes the whole object', async (size) => {
    const snap = fakeSnapshot(40);
    await expect(verifySnapshotStream(chunks(snap, size))).resolves.toEqual({
      size: snap.length,
      sha256: createHash('sha256').update(snap).digest('hex'),
    });
  });

  it('rejects a flipped byte, naming both hashes', async () => {
    const snap = fakeSnapshot(8);
    snap[100] = (snap[100] ?? 0) ^ 0xff;
    const attempt = verifySnapshotStream(chunks(snap, 64));
    await expect(attempt).rejects.toThrow(SnapshotIntegrityError);
    await expect(verifySnapshotStream(chunks(snap, 64))).rejects.toThrow(/SHA-256 mismatch: content hashes to [0-9a-f]{64}, trailer says [0-9a-f]{64}/);
  });

  it.each([0, 1, 31, 512, 8 * 512 + 31])('rejects a stream cut to %i bytes', async (length) => {
    const snap = fakeSnapshot(8).subarray(0, length);
    await expect(verifySnapshotStream(chunks(Buffer.from(snap), 100))).rejects.toThrow(/not a whole etcd snapshot|SHA-256 mismatch/);
  });
});

describe('backup keys', () => {
  it('sort by time and revision and round-trip through a listing', () => {
    const k = backupKeys('etcd/', 'g', new Date('2026-11-26T12:00:00.123Z'), '12345');
    expect(k).toEqual({
      snapshotKey: 'etcd/g/snapshots/20261126T120000123Z-r00000000000000012345.db',
      metadataKey: 'etcd/g/snapshots/20261126T120000123Z-r00000000000000012345.db.meta.json',
    });
    const listing = [k.snapshotKey, k.metadataKey].map((key) => ({ key, lastModified: 0 }));
    expect(pairBackups(listing).backups).toEqual([
      { snapshotKey: k.snapshotKey, metadataKey: k.metadataKey, createdAt: Date.parse('2026-11-26T12:00:00.123Z'), revision: 12345n },
    ]);
  });

  it('calls a snapshot without metadata an orphan, never a backup, and sorts numerically, newest first', () => {
    const at = (iso: string, rev: string) => backupKeys('', 'g', new Date(iso), rev);
    const a = at('2026-11-26T12:00:00Z', '9');
    const b = at('2026-11-26T12:00:00Z', '10');
    const c = at('2026-11-26T11:00:00Z', '99999999999');
    const orphan = at('2026-11-26T13:00:00Z', '11');
    const { backups, orphans } = pairBackups(
      [a.snapshotKey, a.metadataKey, b.snapshotKey, b.metadataKey, c.snapshotKey, c.metadataKey, orphan.snapshotKey, 'g/snapshots/notes.txt'].map((key) => ({ key, lastModified: 5 })),
    );
    expect(backups.map((x) => x.revision)).toEqual([10n, 9n, 99999999999n]);
    expect(orphans).toEqual([{ key: orphan.snapshotKey, lastModified: 5 }]);
  });
});

describe('selectForDeletion', () => {
  const NOW = Date.parse('2026-11-26T12:00:00Z');
  const HOUR = 3_600_000;
  const policy = { keepLast: 3, hourlyForMs: 24 * HOUR, dailyForMs: 7 * 24 * HOUR, orphanAfterMs: 24 * HOUR };
  const ref = (ageMs: number, rev: number) => {
    const k = backupKeys('', 'g', new Date(NOW - ageMs), String(rev));
    return { ...k, createdAt: NOW - ageMs, revision: BigInt(rev) };
  };

  it('keeps the newest N, one per hour for a day, one per day for a week; deletes the rest, metadata with snapshot', () => {
    const backups = [ref(0, 100), ref(10 * 60_000, 99), ref(20 * 60_000, 98), ref(30 * 60_000, 97), ref(2 * HOUR + 5, 96), ref(30 * HOUR, 95), ref(31 * HOUR, 94), ref(9 * 24 * HOUR, 93)];
    const { keep, delete: doomed } = selectForDeletion(backups, [], NOW, policy);
    expect(keep.map((b) => Number(b.revision))).toEqual([100, 99, 98, 96, 95]);
    expect(doomed).toEqual([backups[3]!.metadataKey, backups[3]!.snapshotKey, backups[6]!.metadataKey, backups[6]!.snapshotKey, backups[7]!.metadataKey, backups[7]!.snapshotKey]);
  });

  it('deletes orphan snapshots only once they are older than a day', () => {
    const { delete: doomed } = selectForDeletion([ref(0, 1)], [{ key: 'old', lastModified: NOW - 25 * HOUR }, { key: 'new', lastModified: NOW - HOUR }], NOW, policy);
    expect(doomed).toEqual(['old']);
  });
});

describe('unchangedSince', () => {
  const hashed = { revision: '12', hash: '55', compactRevision: '0' };
  const meta = { clusterId: '7', revision: { before: '10', after: '12', header: null, exact: false }, hashKV: hashed } as unknown as BackupMetadata;
  const unhashed = { ...meta, hashKV: undefined } as BackupMetadata;
  it.each([
    ['same cluster, revision and content', meta, '7', '12', '55', true],
    ['a newer revision', meta, '7', '13', '55', false],
    ['another cluster', meta, '8', '12', '55', false],
    ['same revision, other content', meta, '7', '12', '56', false],
    ['content hash unknown now', meta, '7', '12', undefined, false],
    ['backup without a content hash', unhashed, '7', '12', '55', false],
    ['no backup yet', undefined, '7', '12', '55', false],
  ])('%s', (_name, latest, clusterId, revision, hashKV, expected) => {
    expect(unchangedSince(latest, { clusterId, revision, hashKV })).toBe(expected);
  });
});
