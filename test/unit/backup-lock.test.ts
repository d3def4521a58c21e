import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  BACKUP_FUNCTION_MAX_MS,
  BACKUP_LOCK_MAX_AHEAD_MS,
  backupLockExpiry,
  backupLockKey,
  decideBackupLock,
  decideBackupTime,
  pairBackups,
  selectForDeletion,
  type BackupLockState,
} from '../../core/domain/backups.js';
import { BackupDeadlineError, BackupLockBusyError, BackupLockContendedError } from '../../core/errors.js';
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

  it("outlives its holder (its invocation's deadline) by the clock skew, so no live holder is ever taken over", () => {
    expect(backupLockExpiry(NOW)).toBe(NOW + 60_000);
    // Every expiry a backup writes (at most Lambda's 900 s ahead) is one that counts as plausible.
    expect(BACKUP_LOCK_MAX_AHEAD_MS).toBeGreaterThanOrEqual(backupLockExpiry(BACKUP_FUNCTION_MAX_MS) + 60_000);
  });
});

describe('decideBackupTime (a final backup holding the lock)', () => {
  it.each<[string, number, number | undefined, unknown]>([
    ['the previous backup took 2 min, 10 min left: start', 600_000, 120_000, { kind: 'start', leftMs: 600_000, needMs: 180_000, basis: 'previous-backup' }],
    ['the previous backup took 6 min, 5 min left: defer to a retry with the full time', 300_000, 360_000, { kind: 'defer', reason: 'not-enough-time', leftMs: 300_000, needMs: 540_000, basis: 'previous-backup' }],
    ['exactly one and a half times the previous backup left: start', 540_000, 360_000, { kind: 'start', leftMs: 540_000, needMs: 540_000, basis: 'previous-backup' }],
    ['no previous backup, 30 s left: start (the floor is 20 s)', 30_000, undefined, { kind: 'start', leftMs: 30_000, needMs: 20_000, basis: 'floor' }],
    ['a previous backup of a second, 15 s left: defer (less than the floor)', 15_000, 1000, { kind: 'defer', reason: 'not-enough-time', leftMs: 15_000, needMs: 20_000, basis: 'floor' }],
    ['past the deadline already: defer', -5000, undefined, { kind: 'defer', reason: 'not-enough-time', leftMs: -5000, needMs: 20_000, basis: 'floor' }],
  ])('%s', (_why, leftMs, previous, expected) => {
    expect(decideBackupTime(leftMs, previous)).toEqual(expected);
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

  it("writes a lock that expires a minute after its own invocation's deadline", async () => {
    const { deps, lock } = backupWorld('222', undefined);
    const written: number[] = [];
    const recording = { ...lock, write: (holder: string, expiresAt: number, expected: string | undefined) => (written.push(expiresAt), lock.write(holder, expiresAt, expected)) };
    const deadline = deps.now() + 300_000;

    await takeBackup({ ...deps, lock: recording }, { holder: 'req-self/0001', deadline });

    expect(written).toEqual([deadline + 60_000]);
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
  afterEach(() => {
    vi.useRealTimers();
  });

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

  it('heartbeats before it waits for what etcd needs (the TLS certificate), and again when that fails, so the last instance waits for the retry', async () => {
    const { deps, uploads } = backupWorld('333', undefined);
    const actions = lifecycle();
    const final = takeFinalBackup(
      notice,
      {
        ...deps,
        lifecycle: actions,
        heartbeatMs: 60_000,
        beforeEtcd: () => {
          actions.calls.push('certificate');
          return Promise.reject(new Error('the certificate issuer failed'));
        },
      },
      { lockWait: { waitMs: 0, pollMs: 1000, sleep: () => Promise.resolve() } },
    );
    await expect(final).rejects.toThrow('the certificate issuer failed');
    expect(actions.calls).toEqual(['heartbeat', 'certificate', 'heartbeat']);
    expect(uploads).toEqual([]);
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

  it("a retry after its own attempt timed out is not kept away by that attempt's lock (it expires with the attempt)", async () => {
    const { deps, uploads, lock, cluster } = backupWorld('222', undefined);
    const log = recordingLog();
    let clock = deps.now();
    const sleep = (ms: number) => Promise.resolve(void (clock += ms));
    // Attempt 1 had 5 minutes left when it took the lock, and died holding it (never released).
    const neverReleased = { ...lock, release: () => Promise.reject(new Error('the function timed out')) };
    const dying = Object.assign(Object.create(cluster) as typeof cluster, { snapshot: () => Promise.reject(new Error('Task timed out after 900.00 seconds')) });
    await expect(
      takeFinalBackup(notice, { ...deps, lock: neverReleased, openCluster: () => dying, now: () => clock, lifecycle: lifecycle(), heartbeatMs: 60_000 }, {
        holder: 'req-1/aaaa0000',
        deadline: clock + 300_000,
        lockWait: { waitMs: 0, pollMs: 1000, sleep },
      }),
    ).rejects.toThrow('Task timed out');
    expect(lock.stored?.holder).toBe('req-1/aaaa0000');

    // Lambda retries the event 90 s after attempt 1 was stopped; the retry may wait 5 s for the lock.
    clock += 300_000 + 90_000;
    const summary = await takeFinalBackup(notice, { ...deps, now: () => clock, log, lifecycle: lifecycle(), heartbeatMs: 60_000 }, {
      holder: 'req-1/bbbb1111',
      deadline: clock + 900_000,
      lockWait: { waitMs: 5000, pollMs: 1000, sleep },
    });

    expect(summary).toMatchObject({ status: 'uploaded' });
    expect(uploads).toHaveLength(1);
    expect(log.lines).toContainEqual(expect.objectContaining({ message: 'backup lock taken', fields: expect.objectContaining({ reason: 'expired', from: 'req-1/aaaa0000' }) as unknown }));
  });

  it('does not start the snapshot without the time the previous backup took: releases the lock and fails retryably', async () => {
    const { deps, uploads, lock, store } = backupWorld('222', undefined);
    const log = recordingLog();
    const slow = { ...store, readMetadata: (key: string) => store.readMetadata(key).then((m) => ({ ...m, durationMs: 400_000 })) };
    const actions = lifecycle();
    const options = (left: number) => ({ holder: 'req-final/0001', deadline: deps.now() + left, lockWait: { waitMs: 0, pollMs: 1000, sleep: () => Promise.resolve() } });

    const final = takeFinalBackup(notice, { ...deps, store: slow, log, lifecycle: actions, heartbeatMs: 60_000 }, options(500_000));

    await expect(final).rejects.toThrow(BackupDeadlineError);
    await expect(final).rejects.toThrow(/needs 600 s \(the previous one took 400 s\)/);
    expect(uploads).toEqual([]);
    expect(lock.stored).toBeUndefined();
    expect(actions.calls).toEqual(['heartbeat', 'heartbeat']);
    expect(log.lines).toContainEqual(expect.objectContaining({ message: 'backup deferred: not enough time left before the deadline', fields: expect.objectContaining({ reason: 'not-enough-time', needMs: 600_000 }) as unknown }));
    // With the time, the same backup starts.
    expect(await takeFinalBackup(notice, { ...deps, store: slow, lifecycle: lifecycle(), heartbeatMs: 60_000 }, options(600_000))).toMatchObject({ status: 'uploaded' });
  });

  it('keeps heartbeating the hook while it waits for the lock', async () => {
    vi.useFakeTimers({ now: Date.parse('2026-11-26T12:05:00Z') });
    const { deps, uploads, lock } = backupWorld('222', undefined);
    const scheduled = await lock.write('req-scheduled/0000', Date.now() + 600_000, undefined);
    const actions = lifecycle();
    const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

    const final = takeFinalBackup(notice, { ...deps, now: () => Date.now(), lifecycle: actions, heartbeatMs: 60_000 }, {
      holder: 'req-final/0001',
      deadline: Date.now() + 900_000,
      lockWait: { waitMs: 600_000, pollMs: 2000, sleep },
    });
    await vi.advanceTimersByTimeAsync(5 * 60_000 + 1000);

    // One heartbeat at the start, then one a minute while the scheduled backup holds the lock.
    expect(actions.calls).toEqual(Array<string>(6).fill('heartbeat'));
    expect(uploads).toEqual([]);
    await lock.release(scheduled!);
    await vi.advanceTimersByTimeAsync(2000);
    expect(await final).toMatchObject({ status: 'uploaded' });
    expect(actions.calls.at(-1)).toBe('complete');
  });
});
