import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import {
  BACKUP_FUNCTION_MAX_MS,
  backupKeys,
  backupLockExpiry,
  decideBackupLock,
  decideBackupTime,
  pairBackups,
  selectForDeletion,
  snapshotFolder,
  unchangedSince,
  type BackupLockState,
  type BackupMetadata,
  type RetentionPolicy,
} from '../domain/backups.js';
import { hexMemberId, type Member } from '../domain/members.js';
import { BackupDeadlineError, BackupLockBusyError, BackupLockContendedError, EtcdUnavailableError, describeError } from '../errors.js';
import type { TerminationNotice } from '../domain/lifecycle-events.js';
import type { BackupLock, EtcdCluster, EtcdSnapshots, LifecycleActions, SnapshotStore } from '../ports.js';
import { SnapshotVerifier } from '../snapshot-verifier.js';
import { discoverCluster, type DiscoveryDeps } from './discover.js';

export interface BackupDeps extends DiscoveryDeps {
  readonly openCluster: (endpoints: readonly string[]) => EtcdCluster & EtcdSnapshots;
  readonly store: SnapshotStore;
  /** Keeps backups of the group single-flight (one object in the bucket, compare-and-swap). */
  readonly lock: BackupLock;
  readonly groupName: string;
  readonly prefix: string;
  readonly endpoints: readonly string[] | undefined;
  readonly retention: RetentionPolicy;
  readonly snapshotTimeoutMs: number;
  readonly now: () => number;
}

export type BackupSummary =
  | {
      readonly status: 'uploaded';
      readonly bucket: string;
      readonly key: string;
      readonly metadataKey: string;
      readonly revision: BackupMetadata['revision'];
      readonly size: number;
      readonly sha256: string;
      readonly durationMs: number;
      readonly clusterId: string;
      readonly sourceMember: string;
      readonly deleted: number;
      readonly ageSeconds: 0;
    }
  | {
      readonly status: 'skipped';
      readonly reason: 'revision-unchanged';
      readonly bucket: string;
      readonly latestKey: string;
      readonly revision: string;
      /**
       * How old the data is that no backup holds yet: 0, the newest backup holds all of it. The backup age
       * alarm reads this, so an idle cluster, fully backed up, never looks at risk.
       */
      readonly ageSeconds: 0;
      /** How long ago the newest backup was taken (the cluster has not changed since). */
      readonly newestBackupAgeSeconds: number;
    }
  | {
      /**
       * Another invocation holds the backup lock: it is taking the backup, so this one takes none. No
       * `ageSeconds`: this run knows nothing about the data's age, and the run in progress reports it.
       */
      readonly status: 'skipped';
      readonly reason: 'backup-in-progress';
      readonly bucket: string;
      readonly lockKey: string;
      readonly holder: string;
      /** ISO time until which the holder's lock stands, should it never release it. */
      readonly lockExpiresAt: string;
    };

/** The lock is ours (by the ETag our write returned), or another backup holds it until `expiresAt`. */
export type BackupLockOutcome =
  | { readonly kind: 'held'; readonly lock: BackupLockState }
  | { readonly kind: 'busy'; readonly holder: string; readonly expiresAt: number };

/** How long a caller that must not skip waits for the lock, and how often it looks. */
export interface LockWait {
  readonly waitMs: number;
  readonly pollMs: number;
  readonly sleep: (ms: number) => Promise<void>;
}

/** How many lost races in a row acquireBackupLock accepts before it gives up (BackupLockContendedError). */
export const MAX_LOCK_RACES = 5;

/**
 * Takes the backup lock for `holder` (unique to this attempt), whose invocation ends at `deadline`, until a
 * little after that deadline (backupLockExpiry): creates it, or takes over an expired one (decideBackupLock). A live lock of another backup ends the attempt at once, or, with
 * `wait`, is polled until it is released or expires, as long as `wait.waitMs` allows. A lost compare-and-swap
 * is read again: the winner's lock is then what decides (or, released meanwhile, is gone and tried for again,
 * at most MAX_LOCK_RACES times; or it is our own write, reported lost by an SDK retry, and ours).
 */
export async function acquireBackupLock(
  deps: Pick<BackupDeps, 'lock' | 'now' | 'log'>,
  holder: string,
  deadline: number,
  wait?: LockWait,
): Promise<BackupLockOutcome> {
  const waitUntil = deps.now() + (wait?.waitMs ?? 0);
  let waitingFor: string | undefined;
  let racesLost = 0;
  for (;;) {
    const decision = decideBackupLock(await deps.lock.read(), deps.now(), holder);
    if (decision.kind === 'held') {
      deps.log.info('backup lock taken', { reason: decision.reason, holder, lockKey: deps.lock.key, expiresAt: isoTime(decision.lock.expiresAt), racesLost });
      return { kind: 'held', lock: decision.lock };
    }
    if (decision.kind === 'acquire') {
      const lock = await deps.lock.write(holder, backupLockExpiry(deadline), decision.reason === 'no-lock' ? undefined : decision.etag);
      if (lock) {
        const takenOver =
          decision.reason === 'expired'
            ? { from: decision.from, expiredAt: isoTime(decision.expiredAt) }
            : decision.reason === 'implausible-expiry'
              ? { from: decision.from, claimedExpiry: isoTime(decision.expiresAt) }
              : {};
        deps.log.info('backup lock taken', { reason: decision.reason, holder, lockKey: deps.lock.key, expiresAt: isoTime(lock.expiresAt), ...takenOver });
        return { kind: 'held', lock };
      }
      racesLost += 1;
      if (racesLost >= MAX_LOCK_RACES) {
        deps.log.warn('backup lock race lost too often; giving up', { reason: 'contended', holder, lockKey: deps.lock.key, racesLost });
        throw new BackupLockContendedError(
          `lost the race for the backup lock ${racesLost} times in a row (${deps.lock.key}): other invocations keep taking and releasing it; a retry tries again`,
        );
      }
      deps.log.debug('backup lock race lost; reading the winner', { holder, lockKey: deps.lock.key, racesLost });
      continue;
    }
    const fields = { reason: decision.reason, holder: decision.holder, expiresAt: isoTime(decision.expiresAt), lockKey: deps.lock.key };
    if (!wait || deps.now() + wait.pollMs > waitUntil) return { kind: 'busy', holder: decision.holder, expiresAt: decision.expiresAt };
    if (waitingFor !== decision.holder) deps.log.info('waiting for the backup lock', { ...fields, waitUntil: isoTime(waitUntil) });
    waitingFor = decision.holder;
    await wait.sleep(wait.pollMs);
  }
}

/** Releases the lock at the end of a backup. A failure is only logged: the lock expires by itself. */
async function releaseBackupLock(deps: Pick<BackupDeps, 'lock' | 'log'>, lock: BackupLockState): Promise<void> {
  try {
    const result = await deps.lock.release(lock);
    if (result === 'released') deps.log.info('backup lock released', { holder: lock.holder, lockKey: deps.lock.key });
    else deps.log.warn('backup lock was no longer ours to release', { holder: lock.holder, lockKey: deps.lock.key });
  } catch (error) {
    deps.log.warn('backup lock not released; it expires by itself', { holder: lock.holder, lockKey: deps.lock.key, expiresAt: isoTime(lock.expiresAt), error: describeError(error) });
  }
}

function isoTime(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : 'unknown';
}

/** A holder name for callers that give none: unique per call, so two calls never share one in the logs. */
function anyHolder(): string {
  return `backup-${randomUUID()}`;
}

/** When the invocation ends, for callers that do not say (outside Lambda): Lambda's longest timeout from now. */
function anyDeadline(deps: Pick<BackupDeps, 'now'>): number {
  return deps.now() + BACKUP_FUNCTION_MAX_MS;
}

/** The leader among the members, from their Status answers; its client URL is where the snapshot comes from. */
async function findLeader(members: readonly Member[], deps: BackupDeps): Promise<{ member: Member; endpoint: string }> {
  for (const m of members) {
    const endpoint = m.clientUrls[0];
    if (endpoint === undefined) continue;
    const etcd = deps.openCluster([endpoint]);
    try {
      const status = await etcd.status(endpoint);
      const leader = members.find((x) => x.id === status.leaderId);
      const url = leader?.clientUrls[0];
      if (leader && url) return { member: leader, endpoint: url };
    } catch {
      // try the next member
    } finally {
      etcd.close();
    }
  }
  throw new EtcdUnavailableError('no etcd member named a leader: cannot take a snapshot');
}

/**
 * Takes a verified snapshot of the cluster and streams it to S3, then prunes old backups; skips when another
 * backup is in progress.
 *
 * 0. take the backup lock, or skip ('backup-in-progress': the holder is backing the same cluster up right now)
 * 1. find the live cluster and its leader 2. Status before (revision) 3. skip when nothing changed since the
 * newest valid backup 4. stream Maintenance.Snapshot through the verifier into a multipart upload (aborted
 * on any error, so no object that looks valid is left) 5. Status after 6. write the metadata object last
 * 7. apply retention, now that a fresh valid backup exists 8. release the lock (whatever happened).
 */
export async function takeBackup(deps: BackupDeps, options: { force?: boolean; holder?: string; deadline?: number } = {}): Promise<BackupSummary> {
  const outcome = await acquireBackupLock(deps, options.holder ?? anyHolder(), options.deadline ?? anyDeadline(deps));
  if (outcome.kind === 'busy') {
    const lockExpiresAt = isoTime(outcome.expiresAt);
    deps.log.info('backup skipped: another backup holds the lock', { reason: 'backup-in-progress', holder: outcome.holder, lockExpiresAt, lockKey: deps.lock.key });
    return { status: 'skipped', reason: 'backup-in-progress', bucket: deps.store.bucket, lockKey: deps.lock.key, holder: outcome.holder, lockExpiresAt };
  }
  try {
    return await backupUnderLock(deps, options.force ?? false);
  } finally {
    await releaseBackupLock(deps, outcome.lock);
  }
}

/**
 * Steps 1 to 7 of takeBackup, by the holder of the backup lock. With `timeFor` (the final backup), the snapshot
 * starts only with the time a backup needs left before the invocation's deadline (decideBackupTime).
 */
async function backupUnderLock(deps: BackupDeps, force: boolean, timeFor?: { readonly deadline: number }): Promise<BackupSummary> {
  const started = deps.now();
  const view = await discoverCluster(deps.groupName, deps, deps.endpoints);
  if (!view.cluster.live) throw new EtcdUnavailableError(`no live etcd cluster to back up: ${view.cluster.reason}`);
  const { members, clusterId } = view.cluster;
  const leader = await findLeader(members, deps);
  const etcd = deps.openCluster([leader.endpoint]);
  try {
    const before = await etcd.status(leader.endpoint);
    const folder = snapshotFolder(deps.prefix, deps.groupName);
    const { backups } = pairBackups(await deps.store.list(folder));
    const newest = backups[0];
    const latest = newest ? await deps.store.readMetadata(newest.metadataKey).catch(() => undefined) : undefined;
    if (timeFor) {
      const time = decideBackupTime(timeFor.deadline - deps.now(), latest?.durationMs);
      const fields = { leftMs: time.leftMs, needMs: time.needMs, basis: time.basis, previousDurationMs: latest?.durationMs };
      if (time.kind === 'defer') {
        deps.log.warn('backup deferred: not enough time left before the deadline', { reason: time.reason, ...fields });
        throw new BackupDeadlineError(
          `the backup has ${Math.round(time.leftMs / 1000)} s left and needs ${Math.round(time.needMs / 1000)} s (${time.basis === 'previous-backup' ? `the previous one took ${Math.round((latest?.durationMs ?? 0) / 1000)} s` : 'the least it starts with'}); the lock is released, and a retry has the full time`,
        );
      }
      deps.log.debug('backup has the time it needs', fields);
    }
    // The content hash is worth computing (a scan of every key) only when the revision says nothing changed.
    const sameRevision = latest !== undefined && latest.clusterId === clusterId && BigInt(latest.revision.after) === BigInt(before.revision);
    const hashNow = !force && sameRevision ? await etcd.hashKV(leader.endpoint, before.revision).then((h) => h.hash, () => undefined) : undefined;
    if (!force && newest && latest && unchangedSince(latest, { clusterId, revision: before.revision, hashKV: hashNow })) {
      const newestBackupAgeSeconds = Math.round((deps.now() - Date.parse(latest.createdAt)) / 1000);
      deps.log.info('backup skipped: revision and content unchanged since the newest backup', { revision: before.revision, latestKey: newest.snapshotKey, newestBackupAgeSeconds });
      return {
        status: 'skipped',
        reason: 'revision-unchanged',
        bucket: deps.store.bucket,
        latestKey: newest.snapshotKey,
        revision: before.revision,
        ageSeconds: 0,
        newestBackupAgeSeconds,
      };
    }

    const createdAt = new Date(deps.now());
    const { snapshotKey, metadataKey } = backupKeys(deps.prefix, deps.groupName, createdAt, before.revision);
    deps.log.info('taking snapshot', { key: snapshotKey, leader: leader.member.name, endpoint: leader.endpoint, revision: before.revision });
    const snapshot = await etcd.snapshot(leader.endpoint, deps.snapshotTimeoutMs);
    const verifier = new SnapshotVerifier();
    const body = new PassThrough();
    // The verifier fails at the very end on a bad hash or size; pipeline() then destroys `body` with that
    // error, and the upload reading it aborts the multipart upload instead of completing it. An upload that
    // fails first destroys the snapshot stream, so neither side waits for the other forever.
    const results = await Promise.allSettled([
      pipeline(snapshot.stream, verifier, body),
      deps.store.upload(snapshotKey, body).catch((error: unknown) => {
        snapshot.stream.destroy(error instanceof Error ? error : new Error(String(error)));
        throw error;
      }),
    ]);
    // The upload's error first: it always carries the cause (the verifier's verdict reaches it through the
    // body, and S3's refusal is its own), while a pipeline the upload stopped reading fails only as "aborted".
    const [streamed, uploaded] = results;
    if (uploaded.status === 'rejected') throw uploaded.reason;
    if (streamed.status === 'rejected') throw streamed.reason;
    const { size, sha256 } = verifier.verified();
    const after = await etcd.status(leader.endpoint);
    // What etcd can restore this data is decided by the cluster version; without it, restores go by etcdVersion.
    const clusterVersion = await etcd.clusterVersion(leader.endpoint).catch((error: unknown) => {
      deps.log.warn('cluster version unknown; the metadata records only the leader version', { error: describeError(error) });
      return undefined;
    });
    const header = snapshot.headerRevision() ?? null;
    // The content at `after`, for the next run's "unchanged" check (none when etcd cannot say: never skipped).
    const hashKV = await etcd.hashKV(leader.endpoint, after.revision).catch((error: unknown) => {
      deps.log.warn('content hash unknown; the next backup will not be skipped', { error: describeError(error) });
      return undefined;
    });
    const metadata: BackupMetadata = {
      format: 'etcd-aws/backup-v1',
      bucket: deps.store.bucket,
      key: snapshotKey,
      groupName: deps.groupName,
      clusterId,
      etcdVersion: before.version,
      ...(clusterVersion === undefined ? {} : { clusterVersion }),
      ...(hashKV === undefined ? {} : { hashKV }),
      revision: { before: before.revision, after: after.revision, header, exact: header !== null || before.revision === after.revision },
      size,
      sha256,
      createdAt: createdAt.toISOString(),
      durationMs: deps.now() - started,
      sourceMember: { id: hexMemberId(leader.member.id), name: leader.member.name, endpoint: leader.endpoint },
      members: members.map((m) => ({ id: hexMemberId(m.id), name: m.name, isLearner: m.isLearner })),
    };
    await deps.store.writeMetadata(metadataKey, metadata);
    deps.log.info('backup uploaded', { key: snapshotKey, size, sha256, revision: metadata.revision });

    const deleted = await applyRetention(folder, deps);
    return {
      status: 'uploaded',
      bucket: deps.store.bucket,
      key: snapshotKey,
      metadataKey,
      revision: metadata.revision,
      size,
      sha256,
      durationMs: deps.now() - started,
      clusterId: hexMemberId(clusterId),
      sourceMember: leader.member.name,
      deleted,
      ageSeconds: 0,
    };
  } finally {
    etcd.close();
  }
}

/** Deletes what the retention policy does not keep: metadata first, so a half-done run leaves only orphans. */
export async function applyRetention(folder: string, deps: Pick<BackupDeps, 'store' | 'retention' | 'now' | 'log'>): Promise<number> {
  const { backups, orphans } = pairBackups(await deps.store.list(folder));
  const { delete: doomed } = selectForDeletion(backups, orphans, deps.now(), deps.retention);
  if (doomed.length === 0) return 0;
  const metadataFirst = [...doomed.filter((k) => k.endsWith('.meta.json')), ...doomed.filter((k) => !k.endsWith('.meta.json'))];
  try {
    const first = await deps.store.delete(metadataFirst.filter((k) => k.endsWith('.meta.json')));
    const second = await deps.store.delete(metadataFirst.filter((k) => !k.endsWith('.meta.json')));
    deps.log.info('retention deleted old backups', { objects: first + second });
    return first + second;
  } catch (error) {
    deps.log.warn('retention failed; old backups are kept until the next run', { error: describeError(error) });
    return 0;
  }
}

/**
 * The final backup of a cluster scaled in to zero, for the last member's instance that waits in
 * Terminating:Wait: the hook's heartbeat is recorded now and every `heartbeatMs` while it waits for the backup
 * lock and while the snapshot streams (however long the database takes), then the action is completed and the
 * instance goes. A failure records a heartbeat and is rethrown (Lambda retries, then the on-failure
 * destination), so the instance keeps waiting for the retry.
 *
 * It takes the backup lock like any backup, but never skips: a scheduled backup in progress may have started
 * before the last writes, so the final one must start after it. It waits for the lock (`lockWait`: the
 * handler gives it what the function's time allows beyond the backup itself); a holder that outlasts the wait
 * makes it fail with a retryable BackupLockBusyError, and Lambda's retry, a minute or two later, waits again
 * (by then the holder has finished, or its lock has expired: a lock expires a minute after its holder's
 * deadline, backupLockExpiry, so even the lock of this final backup's own attempt that timed out). Holding the
 * lock, it starts the snapshot only with the time the previous backup took (and half as much again) left before
 * `deadline`; with less, it releases the lock and fails with a retryable BackupDeadlineError.
 */
export async function takeFinalBackup(
  notice: TerminationNotice,
  deps: BackupDeps & {
    readonly lifecycle: LifecycleActions;
    readonly heartbeatMs: number;
    /** What etcd needs first (under TLS, the function's certificate): after the first heartbeat, so a failure still keeps the instance waiting. */
    readonly beforeEtcd?: (() => Promise<void>) | undefined;
  },
  options: { readonly holder?: string; readonly deadline?: number; readonly lockWait: LockWait },
): Promise<BackupSummary> {
  const deadline = options.deadline ?? anyDeadline(deps);
  const fields = { instanceId: notice.instanceId, groupName: notice.groupName };
  const beat = () =>
    deps.lifecycle.heartbeat(notice).catch((error: unknown) => deps.log.warn('lifecycle heartbeat failed', { ...fields, error: describeError(error) }));
  await beat();
  const timer = setInterval(() => void beat(), deps.heartbeatMs);
  let summary: BackupSummary;
  try {
    await deps.beforeEtcd?.();
    const outcome = await acquireBackupLock(deps, options.holder ?? anyHolder(), deadline, options.lockWait);
    if (outcome.kind === 'busy') {
      throw new BackupLockBusyError(
        `the final backup waited ${Math.round(options.lockWait.waitMs / 1000)} s for the backup lock, still held by ${outcome.holder} until ${isoTime(outcome.expiresAt)}; a retry waits again`,
      );
    }
    try {
      summary = await backupUnderLock(deps, true, { deadline });
    } finally {
      await releaseBackupLock(deps, outcome.lock);
    }
  } catch (error) {
    await beat();
    throw error;
  } finally {
    clearInterval(timer);
  }
  const result = await deps.lifecycle.complete(notice);
  deps.log.info('final backup taken; the last member goes', { ...fields, key: summary.status === 'uploaded' ? summary.key : undefined, lifecycle: result });
  return summary;
}
