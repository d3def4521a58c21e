import { CreateBucketCommand, GetObjectCommand, PutBucketVersioningCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { S3BackupLock } from '../../core/aws/backup-lock.js';
import { backupLockKey, type BackupLockState } from '../../core/domain/backups.js';
import type { BackupLock } from '../../core/ports.js';
import { acquireBackupLock } from '../../core/use-cases/backup.js';
import { recordingLog } from '../support/fixtures.js';
import { uniqueName } from '../support/testbed.js';

// Backups are single-flight only as far as S3's conditional writes and deletes let exactly one invocation
// hold the lock. The backup bucket is versioned (infra/backup.yml), where a delete leaves a delete marker
// behind: these races run against the emulator on such a bucket.
const s3 = new S3Client({ forcePathStyle: true });
const bucket = uniqueName('backup-lock').toLowerCase();
const newLock = () => new S3BackupLock(s3, bucket, backupLockKey('p/', uniqueName('group')));
const later = () => Date.now() + 600_000;

beforeAll(async () => {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
});

describe('S3BackupLock on a versioned bucket', () => {
  it('lets exactly one of concurrent creators take the lock', async () => {
    const lock = newLock();
    const results = await Promise.all(['a', 'b', 'c', 'd'].map((holder) => lock.write(holder, later(), undefined)));
    const winners = results.filter((r) => r !== undefined);
    expect(winners).toHaveLength(1);
    expect(await lock.read()).toMatchObject({ holder: winners[0]?.holder, etag: winners[0]?.etag });
  });

  it('creates the lock again over the delete marker its release left', async () => {
    const lock = newLock();
    const first = await lock.write('a', later(), undefined);
    expect(await lock.release(first!)).toBe('released');
    expect(await lock.read()).toBeUndefined();
    expect(await lock.write('b', later(), undefined)).toMatchObject({ holder: 'b' });
  });

  it('a takeover that races a release loses the race instead of throwing (If-Match on a deleted lock: 404)', async () => {
    const lock = newLock();
    // C read B's lock (expired, say); B releases it before C's If-Match write lands.
    const b = await lock.write('b', Date.now() - 1, undefined);
    const seenByC = await lock.read();
    expect(await lock.release(b!)).toBe('released');
    await expect(lock.write('c', later(), seenByC!.etag)).resolves.toBeUndefined();
    expect(await lock.read()).toBeUndefined();
  });

  it('releases nothing once another holder replaced the lock: not-held, and the other lock stays', async () => {
    const lock = newLock();
    const mine = await lock.write('a', Date.now() - 1, undefined);
    const theirs = await lock.write('b', later(), mine!.etag);
    expect(theirs).toBeDefined();
    expect(await lock.release(mine!)).toBe('not-held');
    expect(await lock.read()).toMatchObject({ holder: 'b', etag: theirs!.etag });
  });

  it('a release racing a takeover deletes nothing but its own lock (the takeover lands just before the delete)', async () => {
    let beforeDelete: (() => Promise<unknown>) | undefined;
    const racing = new S3Client({ forcePathStyle: true });
    racing.middlewareStack.add(
      (next, context) => async (args) => {
        const hook = context.commandName === 'DeleteObjectCommand' ? beforeDelete : undefined;
        beforeDelete = undefined;
        await hook?.();
        return next(args);
      },
      { step: 'initialize' },
    );
    const key = backupLockKey('p/', uniqueName('group'));
    const lock = new S3BackupLock(racing, bucket, key);
    const other = new S3BackupLock(s3, bucket, key);
    // Ours expired (we overran, say): another backup takes it over right before our delete goes out.
    const mine = await lock.write('a', Date.now() - 1, undefined);
    let theirs: BackupLockState | undefined;
    beforeDelete = async () => (theirs = await other.write('b', later(), mine!.etag));

    expect(await lock.release(mine!)).toBe('not-held');

    expect(theirs).toBeDefined();
    expect(await other.read()).toMatchObject({ holder: 'b', etag: theirs!.etag });
  });

  it('releases nothing once the lock is gone: not-held', async () => {
    const lock = newLock();
    const mine = await lock.write('a', later(), undefined);
    expect(await lock.release(mine!)).toBe('released');
    expect(await lock.release(mine!)).toBe('not-held');
  });

  it('adopts its own write that landed although the write was reported lost (an SDK retry after a lost response)', async () => {
    const lock = newLock();
    // The first PUT lands and its response is lost; the SDK's retry of the same request finds the object and
    // gets 412, which is all the caller sees: S3 receives the same holder twice.
    let landed: BackupLockState | undefined;
    const retried: BackupLock = {
      key: lock.key,
      read: () => lock.read(),
      release: (held) => lock.release(held),
      write: async (holder, expiresAt, expected) => {
        landed = await lock.write(holder, expiresAt, expected);
        return lock.write(holder, expiresAt, expected);
      },
    };
    const log = recordingLog();

    const outcome = await acquireBackupLock({ lock: retried, now: Date.now, log }, 'req-1/abcd0123', Date.now() + 60_000);

    expect(landed).toBeDefined();
    expect(outcome).toEqual({ kind: 'held', lock: landed });
    expect(log.lines).toContainEqual(expect.objectContaining({ message: 'backup lock taken', fields: expect.objectContaining({ reason: 'own-write' }) as unknown }));
    // Another attempt of the same event (same request ID, another suffix) adopts nothing: it is busy.
    await expect(acquireBackupLock({ lock, now: Date.now, log }, 'req-1/ffff0000', Date.now() + 60_000)).resolves.toMatchObject({ kind: 'busy', holder: 'req-1/abcd0123' });
    expect(await lock.release(landed!)).toBe('released');
  });

  it('a lock the emulator stores is what the read returns (holder, expiry, ETag)', async () => {
    const lock = newLock();
    const expiresAt = later();
    const written = await lock.write('h', expiresAt, undefined);
    const raw = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: lock.key }));
    expect(raw.ETag).toBe(written!.etag);
    expect(await lock.read()).toEqual({ holder: 'h', expiresAt, etag: written!.etag });
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: lock.key, Body: 'not json' }));
    expect(await lock.read()).toMatchObject({ holder: 'unreadable', expiresAt: Number.NaN });
  });
});
