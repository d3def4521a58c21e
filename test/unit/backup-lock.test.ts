import { describe, expect, it } from 'vitest';
import { BACKUP_LOCK_TTL_MS, backupLockKey, decideBackupLock, pairBackups, selectForDeletion, type BackupLockState } from '../../core/domain/backups.js';
import { BackupLockBusyError, BackupLockContendedError } from '../../core/errors.js';
import type { TerminationNotice } from '../../core/domain/lifecycle-events.js';
import { takeBackup, takeFinalBackup } from '../../core/use-cases/backup.js';
import { backupWorld } from '../support/backup-world.js';
import { recordingLog } from '../support/fixtures.js';

const NOW = 1_000_000;
const held = (holder: string, expiresAt: number, etag = '"e1"'): BackupLockState => ({ holder, expiresAt, etag });

describe('decideBackupLock', () => {
  it.each<[string, BackupLockState | undefined, unknown]>([
    ['no lock: create it (If-None-Match)', undefined, { kind: 'acquire', reason: 'no-lock' }],
    ['a live lock of another backup: skip, naming it and its expiry', held('req-a', NOW + 1), { kind: 'busy', reason: 'backup-in-progress', holder: 'req-a', expiresAt: NOW + 1 }],
    // Our own holder (request ID and a suffix of this attempt): our write landed though it was reported lost.
    ['a live lock under our own holder: ours, adopted by its ETag', held('req-self/0001', NOW + 60_000, '"e5"'), { kind: 'held', reason: 'own-write', lock: held('req-self/0001', NOW + 60_000, '"e5"') }],
    // Lambda's retry of an event reuses the request ID; another attempt's suffix makes it another holder.
    ['a live lock of another attempt of the same event: busy', held('req-self/0000', NOW + 60_000), { kind: 'busy', reason: 'backup-in-progress', holder: 'req-self/0000', expiresAt: NOW + 60_000 }],
    ['a lock that expired just now: take it over (If-Match on its ETag)', held('req-a', NOW, '"e2"'), { kind: 'acquire', reason: 'expired', etag: '"e2"', from: 'req-a', expiredAt: NOW }],
    ['a lock long expired (its holder died)', held('req-a', NOW - 3_600_000, '"e3"'), { kind: 'acquire', reason: 'expired', etag: '"e3"', from: 'req-a', expiredAt: NOW - 3_600_000 }],
    ['a lock whose expiry cannot be read: taken over, never held forever', held('unreadable', Number.NaN, '"e4"'), { kind: 'acquire', reason: 'expired', etag: '"e4"', from: 'unreadable', expiredAt: Number.NaN }],
    // No backup writes an expiry further ahead than Lambda's 900 s and the skew, seen from a clock a skew behind.
    ['a lock that expires as far ahead as a backup can write it: busy', held('req-a', NOW + 1_020_000), { kind: 'busy', reason: 'backup-in-progress', holder: 'req-a', expiresAt: NOW + 1_020_000 }],
    ['a lock that expires further ahead than any backup writes: taken over, never wedging backups', held('req-a', NOW + 1_020_001, '"e6"'), { kind: 'acquire', reason: 'implausible-expiry', etag: '"e6"', from: 'req-a', expiresAt: NOW + 1_020_001 }],
    ['a lock that expires in ten years', held('req-a', NOW + 10 * 365 * 86_400_000, '"e7"'), { kind: 'acquire', reason: 'implausible-expiry', etag: '"e7"', from: 'req-a', expiresAt: NOW + 10 * 365 * 86_400_000 }],
  ])('%s', (_why, lock, expected) => {
    expect(decideBackupLock(lock, NOW, 'req-self/0001')).toEqual(expected);
  });

  it('outlives the backup function (900 s timeout), so no live holder is ever taken over', () => {
    expect(BACKUP_LOCK_TTL_MS).toBeGreaterThan(900_000);
  });
});

describe('the lock beside the backups', () => {
  it('is never taken for a backup, an orphan or metadata, so retention never deletes it', () => {
    const lockKey = backupLockKey('etcd/', 'g');
    expect(lockKey).toBe('etcd/g/snapshots/locks/backup.json');
    const snapshot = 'etcd/g/snapshots/20261126T120000000Z-r00000000000000000100.db';
    const listing = [{ key: snapshot, lastModified: 0 }, { key: `${snapshot}.meta.json`, lastModified: 0 }, { key: lockKey, lastModified: 0 }];
    const { backups, orphans } = pairBackups(listing);
    expect(backups.map((b) => b.snapshotKey)).toEqual([snapshot]);
    expect(orphans).toEqual([]);
    const policy = { keepLast: 0, hourlyForMs: 0, dailyForMs: 0, orphanAfterMs: 0 };
    expect(selectForDeletion(backups, orphans, Date.parse('2027-01-01T00:00:00Z'), policy).delete).not.toContain(lockKey);
  });
});

describe('takeBackup under the lock', () => {
  it('skips while another backup holds the lock, naming the holder and its expiry, and takes no snapshot', async () => {
    const { deps, uploads, lock } = backupWorld('222', undefined);
    const log = recordingLog();
    const expiresAt = deps.now() + 60_000;
    await lock.write('req-other', expiresAt, undefined);

    const summary = await takeBackup({ ...deps, log }, { holder: 'req-self' });

    expect(summary).toEqual({
      status: 'skipped',
      reason: 'backup-in-progress',
      bucket: 'b',
      lockKey: lock.key,
      holder: 'req-other',
      lockExpiresAt: new Date(expiresAt).toISOString(),
    });
    expect('ageSeconds' in summary).toBe(false);
    expect(uploads).toEqual([]);
    expect(lock.stored?.holder).toBe('req-other');
    expect(log.lines).toContainEqual(expect.objectContaining({ message: 'backup skipped: another backup holds the lock', fields: expect.objectContaining({ reason: 'backup-in-progress', holder: 'req-other' }) as unknown }));
  });

  it('takes over an expired lock, backs up, and releases the lock at the end', async () => {
    const { deps, uploads, lock } = backupWorld('222', undefined);
    const log = recordingLog();
    await lock.write('req-dead', deps.now() - 1, undefined);

    expect(await takeBackup({ ...deps, log }, { holder: 'req-self' })).toMatchObject({ status: 'uploaded' });

    expect(uploads).toHaveLength(1);
    expect(lock.stored).toBeUndefined();
    expect(log.lines).toContainEqual(expect.objectContaining({ message: 'backup lock taken', fields: expect.objectContaining({ reason: 'expired', from: 'req-dead', holder: 'req-self' }) as unknown }));
  });

  it('releases the lock when the backup fails', async () => {
    const { deps, cluster, lock } = backupWorld('222', undefined);
    cluster.snapshot = () => Promise.reject(new Error('stream refused'));
    await expect(takeBackup(deps)).rejects.toThrow('stream refused');
    expect(lock.stored).toBeUndefined();
  });

  it('a release that fails is logged and never fails the backup (the lock expires)', async () => {
    const { deps } = backupWorld('222', undefined);
    const log = recordingLog();
    const lock = { ...deps.lock, release: () => Promise.reject(new Error('AccessDenied')) };
    expect(await takeBackup({ ...deps, lock, log })).toMatchObject({ status: 'uploaded' });
    expect(log.lines).toContainEqual(expect.objectContaining({ level: 'warn', message: 'backup lock not released; it expires by itself', fields: expect.objectContaining({ error: 'AccessDenied' }) as unknown }));
  });

  it('adopts its own lock when its write landed but was reported lost (an SDK retry got 412), and backs up', async () => {
    const { deps, uploads, lock } = backupWorld('222', undefined);
    const log = recordingLog();
    const landsUnseen = {
      ...lock,
      write: async (holder: string, expiresAt: number, expected: string | undefined) => {
        await lock.write(holder, expiresAt, expected);
        return undefined;
      },
    };

    expect(await takeBackup({ ...deps, lock: landsUnseen, log }, { holder: 'req-self/0001' })).toMatchObject({ status: 'uploaded' });

    expect(uploads).toHaveLength(1);
    expect(lock.stored).toBeUndefined();
    expect(log.lines).toContainEqual(expect.objectContaining({ message: 'backup lock taken', fields: expect.objectContaining({ reason: 'own-write', holder: 'req-self/0001' }) as unknown }));
  });

  it('fails with a clear, retryable error after losing the race for the lock five times in a row', async () => {
    const { deps, uploads, lock } = backupWorld('222', undefined);
    let writes = 0;
    // Every write loses, and every read finds the lock gone again (released by its winner meanwhile).
    const contended = {
      ...lock,
      write: () => {
        writes += 1;
        if (writes > 50) throw new Error('unbounded');
        return Promise.resolve(undefined);
      },
    };

    const backup = takeBackup({ ...deps, lock: contended }, { holder: 'req-self/0001' });

    await expect(backup).rejects.toThrow(BackupLockContendedError);
    await expect(backup).rejects.toThrow(/lost the race for the backup lock 5 times/);
    expect(writes).toBe(5);
    expect(uploads).toEqual([]);
  });

  it('of two concurrent backups, exactly one uploads and the other skips', async () => {
    const { deps, uploads, lock } = backupWorld('222', undefined);
    const results = await Promise.all([takeBackup(deps, { holder: 'a' }), takeBackup(deps, { holder: 'b' })]);
    expect(uploads).toHaveLength(1);
    expect(results.map((r) => (r.status === 'skipped' ? r.reason : r.status)).sort()).toEqual(['backup-in-progress', 'uploaded']);
    expect(lock.stored).toBeUndefined();
  });
});

describe('takeFinalBackup under the lock', () => {
  const notice: TerminationNotice = { groupName: 'g', instanceId: 'i-a', hookName: 'etcd-terminate', token: 't', time: undefined };
  const lifecycle = () => {
    const calls: string[] = [];
    return { calls, heartbeat: () => Promise.resolve(void calls.push('heartbeat')), complete: () => Promise.resolve((calls.push('complete'), 'completed' as const)) };
  };

  it('waits for a scheduled backup in progress, then backs up after it and lets the instance go', async () => {
    const { deps, uploads, lock } = backupWorld('111', { revision: '100', hash: '111', compactRevision: '0' });
    const scheduled = await lock.write('req-scheduled', deps.now() + 60_000, undefined);
    const actions = lifecycle();
    const slept: number[] = [];
    // The scheduled backup releases its lock while the final one sleeps its second poll.
    const sleep = (ms: number) => {
      slept.push(ms);
      if (slept.length === 2 && scheduled) void lock.release(scheduled);
      return Promise.resolve();
    };

    const summary = await takeFinalBackup(notice, { ...deps, lifecycle: actions, heartbeatMs: 60_000 }, { holder: 'req-final', lockWait: { waitMs: 30_000, pollMs: 1000, sleep } });

    // Forced, though nothing changed: the final backup never skips
    expect(summary).toMatchObject({ status: 'uploaded' });
    expect(uploads).toHaveLength(1);
    expect(slept).toEqual([1000, 1000]);
    expect(actions.calls.at(-1)).toBe('complete');
    expect(lock.stored).toBeUndefined();
  });

  it('fails, retryably and with a heartbeat, when the lock stays held longer than it may wait; the instance waits for the retry', async () => {
    const { deps, uploads, lock } = backupWorld('222', undefined);
    await lock.write('req-scheduled', deps.now() + 60_000, undefined);
    const actions = lifecycle();
    let clock = deps.now();
    const sleep = (ms: number) => Promise.resolve(void (clock += ms));

    const final = takeFinalBackup(notice, { ...deps, now: () => clock, lifecycle: actions, heartbeatMs: 60_000 }, { lockWait: { waitMs: 5000, pollMs: 1000, sleep } });

    await expect(final).rejects.toThrow(BackupLockBusyError);
    await expect(final).rejects.toThrow(/req-scheduled/);
    expect(uploads).toEqual([]);
    expect(actions.calls).toEqual(['heartbeat', 'heartbeat']);
    expect(lock.stored?.holder).toBe('req-scheduled');
  });
});
