import { ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pairBackups, snapshotFolder, type BackupRef } from '../domain/backups.js';
import { checkRestoreVersion, parseEtcdVersion, type EtcdVersion } from '../domain/versions.js';
import { EtcdAwsError, SnapshotIntegrityError, describeError } from '../errors.js';
import { RestoreFailedError } from '../etcd/restore-tool.js';
import type { Log } from '../logger.js';
import type { SnapshotStore } from '../ports.js';
import { SnapshotVerifier } from '../snapshot-verifier.js';

/** Backups exist, but none passed verification and restore: starting empty would lose them. */
export class NoRestorableBackupError extends EtcdAwsError {}

/**
 * The backup holds data of a newer etcd than this instance runs, which etcd cannot start on. Never a reason
 * to restore an older backup instead: that would throw the newer data away.
 */
export class IncompatibleBackupError extends EtcdAwsError {}

/**
 * A backup could not be read or restored for a reason that says nothing about it (S3 throttled or unreachable,
 * a download cut short, the disk full, the tool killed). Retryable: the agent starts again and tries the same
 * backup; falling back to an older one would lose the writes only the newer one holds.
 */
export class RestoreInterruptedError extends EtcdAwsError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, retryable: true });
  }
}

export interface Restorer {
  readonly tool: string;
  /** The release of the restore tool, which is the release the restored member will run. */
  readonly version: EtcdVersion;
  restore(
    snapshotFile: string,
    target: { name: string; peerUrl: string; token: string; dataDir: string; bumpRevision: number | undefined },
  ): Promise<void>;
}

export interface RestoreDeps {
  readonly store: SnapshotStore;
  readonly prefix: string;
  readonly groupName: string;
  readonly restorer: Restorer;
  readonly dataDir: string;
  /** Operator override: start an empty cluster even though backups exist and none restores. */
  readonly allowEmptyStart: boolean;
  readonly bumpRevision: number | undefined;
  /** How often a backup that failed for a reason that says nothing about it is tried again, with exponential backoff. */
  readonly retries: { readonly count: number; readonly initialDelayMs: number; readonly maxDelayMs: number };
  readonly log: Log;
}

export interface RestoreAttempt {
  readonly key: string;
  readonly outcome: 'restored' | 'failed';
  readonly reason?: string;
}

export type SeedData =
  | { readonly kind: 'restored'; readonly key: string; readonly revision: string; readonly attempts: readonly RestoreAttempt[] }
  | { readonly kind: 'empty'; readonly reason: 'no-backup-ever' | 'operator-override'; readonly attempts: readonly RestoreAttempt[] };

/**
 * Downloads one backup to a file beside the data dir, checking its SHA-256 and size against the metadata and
 * the snapshot's own trailer while streaming, then restores it with etcd's tool into a staging dir that is
 * renamed into place only when complete (an interrupted restore never leaves a data dir that looks valid).
 */
export async function restoreBackup(
  backup: Pick<BackupRef, 'snapshotKey' | 'metadataKey'>,
  target: { name: string; peerUrl: string; token: string },
  deps: Pick<RestoreDeps, 'store' | 'restorer' | 'dataDir' | 'bumpRevision'>,
): Promise<{ revision: string }> {
  const meta = await deps.store.readMetadata(backup.metadataKey);
  // The data's version is the cluster version when the backup was taken (older metadata: the leader's).
  const dataVersion = parseEtcdVersion(meta.clusterVersion ?? meta.etcdVersion);
  const versions = checkRestoreVersion(deps.restorer.version, dataVersion, backup.snapshotKey);
  if (!versions.ok) throw new IncompatibleBackupError(versions.detail);
  const file = path.join(path.dirname(deps.dataDir), `.etcd-aws-restore-${path.basename(backup.snapshotKey)}`);
  const staging = `${deps.dataDir}.restoring`;
  try {
    const verifier = new SnapshotVerifier();
    await pipeline(await deps.store.download(backup.snapshotKey), verifier, createWriteStream(file));
    const { size, sha256 } = verifier.verified();
    if (size !== meta.size || sha256 !== meta.sha256) {
      throw new SnapshotIntegrityError(`${backup.snapshotKey}: download does not match its metadata: ${size} bytes, sha256 ${sha256}; expected ${meta.size} bytes, sha256 ${meta.sha256}`);
    }
    await rm(staging, { recursive: true, force: true });
    await deps.restorer.restore(file, { ...target, dataDir: staging, bumpRevision: deps.bumpRevision });
    await rename(staging, deps.dataDir);
    return { revision: meta.revision.header ?? meta.revision.after };
  } finally {
    await rm(file, { force: true });
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Whether a failure condemns the backup itself (fall back to the previous one) or says nothing about it (try
 * the same backup again). Only a complete object that fails its checks, metadata that does not parse or match,
 * and a snapshot etcd's tool rejects condemn it; anything else (S3 errors, a cut download, this machine's disk)
 * would, if taken for a bad backup, roll the cluster back past writes only the newer backup holds.
 */
function condemnsBackup(error: unknown): boolean {
  return error instanceof SnapshotIntegrityError || (error instanceof RestoreFailedError && !error.retryable);
}

/**
 * What a founder seeds the new cluster with: the newest valid backup of the group, falling back to older
 * ones only when one is invalid (it fails verification, or etcd rejects it); an empty cluster only when the
 * group never had a backup (or the operator says so). A failure that says nothing about the backup is retried
 * on the same backup (listing again: retention may have moved on), then given up with a retryable error:
 * never an older backup, never an empty start. Backups that exist but none restores is an error too.
 */
export async function seedFromBackups(target: { name: string; peerUrl: string; token: string }, deps: RestoreDeps): Promise<SeedData> {
  const current = { key: 'the backup listing' };
  const policy = retry(
    handleWhen((error) => !condemnsBackup(error) && !(error instanceof IncompatibleBackupError)),
    {
      maxAttempts: deps.retries.count,
      backoff: new ExponentialBackoff({ initialDelay: deps.retries.initialDelayMs, maxDelay: deps.retries.maxDelayMs }),
    },
  );
  const retried = policy.onRetry(({ delay, ...outcome }) => {
    const reason = 'error' in outcome ? describeError(outcome.error) : 'no error';
    deps.log.warn('could not read or restore a backup for a reason that says nothing about it; trying it again', { reason, delayMs: delay });
  });
  try {
    return await policy.execute(() => seedOnce(target, deps, current));
  } catch (error) {
    if (condemnsBackup(error) || error instanceof IncompatibleBackupError || error instanceof NoRestorableBackupError) throw error;
    throw new RestoreInterruptedError(
      `could not read or restore ${current.key} after ${deps.retries.count + 1} tries: ${describeError(error)}. ` +
        'Not falling back to an older backup (it would lose the writes only the newer one holds) nor starting empty; ' +
        'the agent starts again and retries',
      { cause: error },
    );
  } finally {
    retried.dispose();
  }
}

/** One pass over the listing, newest first: past invalid backups only; any other failure ends the pass. */
async function seedOnce(target: { name: string; peerUrl: string; token: string }, deps: RestoreDeps, current: { key: string }): Promise<SeedData> {
  const { backups, orphans } = pairBackups(await deps.store.list(snapshotFolder(deps.prefix, deps.groupName)));
  if (backups.length === 0) {
    deps.log.info('no backup exists; founding an empty cluster', { groupName: deps.groupName, incompleteSnapshots: orphans.length });
    return { kind: 'empty', reason: 'no-backup-ever', attempts: [] };
  }
  const invalid: RestoreAttempt[] = [];
  for (const backup of backups) {
    deps.log.info('restoring backup', { key: backup.snapshotKey, tool: deps.restorer.tool });
    current.key = backup.snapshotKey;
    try {
      const { revision } = await restoreBackup(backup, target, deps);
      deps.log.info('restored backup', { key: backup.snapshotKey, revision, skipped: invalid });
      return { kind: 'restored', key: backup.snapshotKey, revision, attempts: [...invalid, { key: backup.snapshotKey, outcome: 'restored' }] };
    } catch (error) {
      if (!condemnsBackup(error)) throw error;
      invalid.push({ key: backup.snapshotKey, outcome: 'failed', reason: describeError(error) });
      deps.log.warn('backup is invalid; trying the previous one', { key: backup.snapshotKey, reason: describeError(error) });
    }
  }
  const tried = invalid.map((a) => `${a.key} (${a.reason ?? ''})`).join('; ');
  if (deps.allowEmptyStart) {
    deps.log.warn('no backup restores; starting an EMPTY cluster because ETCD_AWS_ALLOW_EMPTY_START is set', { tried });
    return { kind: 'empty', reason: 'operator-override', attempts: invalid };
  }
  throw new NoRestorableBackupError(
    `refusing to start an empty cluster: ${invalid.length} backup(s) exist but none restores: ${tried}. ` +
      'Fix or remove the broken backups, restore one by hand (node-agent restore), or set ETCD_AWS_ALLOW_EMPTY_START=true to start empty',
  );
}
