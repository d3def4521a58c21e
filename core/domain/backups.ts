import * as z from 'zod';

/** The metadata object written last, next to each snapshot: without it a snapshot is not a valid backup. */
export const BackupMetadataSchema = z.object({
  format: z.literal('etcd-aws/backup-v1'),
  bucket: z.string(),
  key: z.string(),
  groupName: z.string(),
  clusterId: z.string(),
  /** Server version of the member the snapshot came from. */
  etcdVersion: z.string(),
  /**
   * The cluster version when the snapshot was taken (etcd's /version "etcdcluster"): the version of the data,
   * which decides which etcd can restore it. Absent in backups taken before it was recorded.
   */
  clusterVersion: z.string().optional(),
  revision: z.object({
    /** Cluster revision from Status just before the snapshot started. */
    before: z.string(),
    /** Cluster revision from Status just after the snapshot ended. */
    after: z.string(),
    /** Revision in the snapshot stream's header, should etcd send one; null with every release up to 3.7. */
    header: z.string().nullable(),
    /** True when the snapshot's revision is known exactly (header present, or before == after). */
    exact: z.boolean(),
  }),
  /**
   * etcd's HashKV of the cluster's keys at `revision.after`, taken right after the snapshot: what tells an
   * unchanged cluster from one whose revision came back with other content (after a recovery from a member
   * that lagged behind). Absent in backups taken before it was recorded.
   */
  hashKV: z.object({ revision: z.string(), hash: z.string(), compactRevision: z.string() }).optional(),
  size: z.number().int().positive(),
  /** SHA-256 of the whole object, hex: what a download is checked against. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  durationMs: z.number(),
  sourceMember: z.object({ id: z.string(), name: z.string(), endpoint: z.string() }),
  members: z.array(z.object({ id: z.string(), name: z.string(), isLearner: z.boolean() })),
});
export type BackupMetadata = z.infer<typeof BackupMetadataSchema>;

/** A backup as its keys describe it: enough to sort, pick and prune without reading every object. */
export interface BackupRef {
  readonly snapshotKey: string;
  readonly metadataKey: string;
  /** Epoch ms of creation, from the key. */
  readonly createdAt: number;
  /** Revision before the snapshot, from the key. */
  readonly revision: bigint;
}

const SNAPSHOT = /(\d{8}T\d{6}\d{3}Z)-r(\d{20})\.db$/;

/** Folder of a group's backups: `<prefix><group>/snapshots/`. */
export function snapshotFolder(prefix: string, groupName: string): string {
  return `${prefix}${groupName}/snapshots/`;
}

/**
 * Key of a new snapshot: time first, then the zero-padded revision, so keys sort by time and revision even
 * as strings (`20261126T120000123Z-r00000000000000012345.db`); the metadata key adds `.meta.json`.
 */
export function backupKeys(prefix: string, groupName: string, createdAt: Date, revision: string): { snapshotKey: string; metadataKey: string } {
  const stamp = createdAt.toISOString().replace(/[-:]/g, '').replace('.', '');
  const snapshotKey = `${snapshotFolder(prefix, groupName)}${stamp}-r${BigInt(revision).toString().padStart(20, '0')}.db`;
  return { snapshotKey, metadataKey: `${snapshotKey}.meta.json` };
}

function parseStamp(stamp: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(stamp);
  if (!m) return Number.NaN;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), Number(m[7]));
}

/**
 * Pairs snapshot and metadata keys from a listing. Valid backups have both; snapshots without metadata are
 * orphans (an interrupted run); anything else is ignored. Sorted newest first by parsed time, then revision,
 * never as strings. Pure.
 */
export function pairBackups(objects: ReadonlyArray<{ key: string; lastModified: number }>): {
  backups: BackupRef[];
  orphans: Array<{ key: string; lastModified: number }>;
} {
  const keys = new Set(objects.map((o) => o.key));
  const backups: BackupRef[] = [];
  const orphans: Array<{ key: string; lastModified: number }> = [];
  for (const o of objects) {
    const m = SNAPSHOT.exec(o.key);
    if (!m) continue;
    const createdAt = parseStamp(m[1] ?? '');
    if (Number.isNaN(createdAt)) continue;
    const metadataKey = `${o.key}.meta.json`;
    if (keys.has(metadataKey)) backups.push({ snapshotKey: o.key, metadataKey, createdAt, revision: BigInt(m[2] ?? '0') });
    else orphans.push(o);
  }
  backups.sort((a, b) => b.createdAt - a.createdAt || (b.revision > a.revision ? 1 : b.revision < a.revision ? -1 : 0));
  return { backups, orphans };
}

export interface RetentionPolicy {
  /** Always keep this many newest valid backups. */
  readonly keepLast: number;
  /** Keep the newest backup of each hour for this long. */
  readonly hourlyForMs: number;
  /** Keep the newest backup of each day for this long. */
  readonly dailyForMs: number;
  /** Snapshots without metadata older than this are deleted (a run that died mid-way). */
  readonly orphanAfterMs: number;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Which objects retention deletes: every valid backup that is not among the newest `keepLast`, not the
 * newest of its hour within `hourlyForMs`, and not the newest of its day within `dailyForMs`; plus old
 * orphans. `backups` must be newest first (pairBackups). The caller only runs it right after a fresh backup
 * succeeded. Pure.
 */
export function selectForDeletion(
  backups: readonly BackupRef[],
  orphans: ReadonlyArray<{ key: string; lastModified: number }>,
  now: number,
  policy: RetentionPolicy,
): { keep: BackupRef[]; delete: string[] } {
  const keep = new Set<BackupRef>(backups.slice(0, policy.keepLast));
  const hours = new Set<number>();
  const days = new Set<number>();
  for (const b of backups) {
    const age = now - b.createdAt;
    const hour = Math.floor(b.createdAt / HOUR);
    const day = Math.floor(b.createdAt / DAY);
    if (age <= policy.hourlyForMs && !hours.has(hour)) {
      hours.add(hour);
      keep.add(b);
    }
    if (age <= policy.dailyForMs && !days.has(day)) {
      days.add(day);
      keep.add(b);
    }
  }
  const doomed = backups.filter((b) => !keep.has(b)).flatMap((b) => [b.metadataKey, b.snapshotKey]);
  const staleOrphans = orphans.filter((o) => now - o.lastModified > policy.orphanAfterMs).map((o) => o.key);
  return { keep: backups.filter((b) => keep.has(b)), delete: [...doomed, ...staleOrphans] };
}

/**
 * Skip a backup only when the cluster provably has not changed since the newest valid one: the same cluster,
 * the same revision, and the same content at that revision (etcd's HashKV). A revision alone is not enough:
 * after a forced recovery from a member that lagged behind, the revisions it had not seen come back with other
 * writes. A backup without a recorded hash cannot be compared, so it never justifies a skip. Pure.
 */
export function unchangedSince(latest: BackupMetadata | undefined, current: { clusterId: string; revision: string; hashKV: string | undefined }): boolean {
  return (
    latest !== undefined &&
    latest.clusterId === current.clusterId &&
    BigInt(latest.revision.after) === BigInt(current.revision) &&
    latest.hashKV !== undefined &&
    BigInt(latest.hashKV.revision) === BigInt(current.revision) &&
    current.hashKV !== undefined &&
    latest.hashKV.hash === current.hashKV
  );
}

/**
 * Key of the group's backup lock: `<prefix><group>/snapshots/locks/backup.json`. It sits in the snapshot folder
 * because that is what the backup function's IAM grant reaches (infra/iam.yml); its name is not
 * `<time>-r<revision>.db`, so pairBackups never takes it for a snapshot, an orphan or metadata, and neither
 * retention nor a restore ever touches it.
 */
export function backupLockKey(prefix: string, groupName: string): string {
  return `${snapshotFolder(prefix, groupName)}locks/backup.json`;
}

/**
 * Lambda's longest timeout, and the backup function's (serverless.yml): no invocation that may hold the backup
 * lock lives longer than this.
 */
export const BACKUP_FUNCTION_MAX_MS = 900_000;

/**
 * What a backup lock's expiry adds to its holder's life: the clocks of two Lambda hosts (Amazon Time Sync keeps
 * them within milliseconds), with room to spare.
 */
export const BACKUP_LOCK_CLOCK_SKEW_MS = 60_000;

/**
 * Until when a backup lock holds without its holder releasing it, for a holder whose invocation ends at
 * `deadline` (epoch ms: in Lambda, the time of the handler's start plus the context's remaining time). It must
 * outlive its holder, or a second backup could take it over while the first still uploads: Lambda stops the
 * invocation at its deadline, so a lock expiring BACKUP_LOCK_CLOCK_SKEW_MS later is never taken from a live
 * holder, whichever host's clock reads it. It need not outlive it by more: a holder that died (a timeout, a
 * crash) keeps the next backups away until then and no longer (at most 16 minutes, about three runs of the
 * default 5-minute schedule, long enough for the backup-age alarm to say so), and the retry of a final backup
 * that timed out finds its predecessor's lock expired a minute after that attempt was stopped.
 */
export function backupLockExpiry(deadline: number): number {
  return deadline + BACKUP_LOCK_CLOCK_SKEW_MS;
}

/**
 * No backup writes an expiry further ahead than its own deadline (at most BACKUP_FUNCTION_MAX_MS away) plus the
 * skew (backupLockExpiry), and
 * a reader whose clock is a skew behind the writer's sees at most one skew more. An expiry beyond that was never
 * written by a backup (a hand-made or damaged object): it counts as expired, so it cannot wedge backups.
 */
export const BACKUP_LOCK_MAX_AHEAD_MS = BACKUP_FUNCTION_MAX_MS + 2 * BACKUP_LOCK_CLOCK_SKEW_MS;

/** The backup lock as stored: who holds it and until when (epoch ms), and the object's ETag for compare-and-swap. */
export interface BackupLockState {
  readonly holder: string;
  /** NaN when the stored object cannot be read: such a lock counts as expired. */
  readonly expiresAt: number;
  readonly etag: string;
}

export type BackupLockDecision =
  | { readonly kind: 'acquire'; readonly reason: 'no-lock' }
  | { readonly kind: 'acquire'; readonly reason: 'expired'; readonly etag: string; readonly from: string; readonly expiredAt: number }
  | { readonly kind: 'acquire'; readonly reason: 'implausible-expiry'; readonly etag: string; readonly from: string; readonly expiresAt: number }
  | { readonly kind: 'held'; readonly reason: 'own-write'; readonly lock: BackupLockState }
  | { readonly kind: 'busy'; readonly reason: 'backup-in-progress'; readonly holder: string; readonly expiresAt: number };

/**
 * Whether a backup may start: create the lock when there is none (If-None-Match), take over one that expired
 * (its holder died without releasing it; If-Match on its ETag) or whose expiry no backup could have written
 * (BACKUP_LOCK_MAX_AHEAD_MS), else another backup is in progress until the lock's expiry.
 *
 * `self` is this attempt's holder, unique to it (the request ID, which Lambda's retry of an event reuses, plus a
 * random suffix): a live lock under it is one our own write created although the write was reported lost (the
 * SDK retried a PUT whose response was lost, and the retry got 412), and is adopted by its ETag. Across attempts
 * a holder's name decides nothing: no attempt ever takes another's lock, even one of the same event, for its
 * own. Pure.
 */
export function decideBackupLock(lock: BackupLockState | undefined, now: number, self: string): BackupLockDecision {
  if (!lock) return { kind: 'acquire', reason: 'no-lock' };
  // `!(a > b)` rather than `a <= b`: an unreadable expiry (NaN) is expired, not held forever.
  if (!(lock.expiresAt > now)) return { kind: 'acquire', reason: 'expired', etag: lock.etag, from: lock.holder, expiredAt: lock.expiresAt };
  if (lock.expiresAt > now + BACKUP_LOCK_MAX_AHEAD_MS) return { kind: 'acquire', reason: 'implausible-expiry', etag: lock.etag, from: lock.holder, expiresAt: lock.expiresAt };
  if (lock.holder === self) return { kind: 'held', reason: 'own-write', lock };
  return { kind: 'busy', reason: 'backup-in-progress', holder: lock.holder, expiresAt: lock.expiresAt };
}

/**
 * The least time a final backup starts its snapshot with, whatever the previous backup took (or with none to go
 * by): a small database streams in seconds, and a floor above the 60 s a test bed's invocations get would defer
 * every final backup there.
 */
export const FINAL_BACKUP_MIN_MS = 20_000;

export type BackupTimeDecision =
  | { readonly kind: 'start'; readonly leftMs: number; readonly needMs: number; readonly basis: 'previous-backup' | 'floor' }
  | { readonly kind: 'defer'; readonly reason: 'not-enough-time'; readonly leftMs: number; readonly needMs: number; readonly basis: 'previous-backup' | 'floor' };

/**
 * Whether a final backup, holding the lock with `leftMs` of its invocation left, starts its snapshot: only with
 * one and a half times what the previous backup took (its metadata's `durationMs`; the database has grown
 * since, perhaps), and never with less than FINAL_BACKUP_MIN_MS. Otherwise it defers: it releases the lock and
 * fails retryably, and Lambda's retry starts with the function's full time, where an upload cut off by the
 * deadline would leave only a timed-out attempt behind. Pure.
 */
export function decideBackupTime(leftMs: number, previousDurationMs: number | undefined): BackupTimeDecision {
  const fromPrevious = previousDurationMs === undefined ? 0 : Math.ceil(previousDurationMs * 1.5);
  const basis = fromPrevious > FINAL_BACKUP_MIN_MS ? 'previous-backup' : 'floor';
  const needMs = Math.max(fromPrevious, FINAL_BACKUP_MIN_MS);
  if (leftMs >= needMs) return { kind: 'start', leftMs, needMs, basis };
  return { kind: 'defer', reason: 'not-enough-time', leftMs, needMs, basis };
}
