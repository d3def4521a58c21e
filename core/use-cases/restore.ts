import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pairBackups, snapshotFolder, type BackupRef } from '../domain/backups.js';
import { checkRestoreVersion, parseEtcdVersion, type EtcdVersion } from '../domain/versions.js';
import { EtcdAwsError, describeError } from '../errors.js';
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
      throw new EtcdAwsError(`download does not match its metadata: ${size} bytes, sha256 ${sha256}; expected ${meta.size} bytes, sha256 ${meta.sha256}`);
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
 * What a founder seeds the new cluster with: the newest valid backup of the group, falling back to older
 * ones when one fails verification or restore; an empty cluster only when the group never had a backup
 * (or the operator says so). Backups that exist but none restores is an error, never an empty start.
 */
export async function seedFromBackups(target: { name: string; peerUrl: string; token: string }, deps: RestoreDeps): Promise<SeedData> {
  const { backups, orphans } = pairBackups(await deps.store.list(snapshotFolder(deps.prefix, deps.groupName)));
  if (backups.length === 0) {
    deps.log.info('no backup exists; founding an empty cluster', { groupName: deps.groupName, incompleteSnapshots: orphans.length });
    return { kind: 'empty', reason: 'no-backup-ever', attempts: [] };
  }
  const attempts: RestoreAttempt[] = [];
  for (const backup of backups) {
    deps.log.info('restoring backup', { key: backup.snapshotKey, tool: deps.restorer.tool });
    try {
      const { revision } = await restoreBackup(backup, target, deps);
      attempts.push({ key: backup.snapshotKey, outcome: 'restored' });
      deps.log.info('restored backup', { key: backup.snapshotKey, revision, skipped: attempts.filter((a) => a.outcome === 'failed') });
      return { kind: 'restored', key: backup.snapshotKey, revision, attempts };
    } catch (error) {
      if (error instanceof IncompatibleBackupError) throw error;
      attempts.push({ key: backup.snapshotKey, outcome: 'failed', reason: describeError(error) });
      deps.log.warn('backup cannot be restored; trying the previous one', { key: backup.snapshotKey, reason: describeError(error) });
    }
  }
  const tried = attempts.map((a) => `${a.key} (${a.reason ?? ''})`).join('; ');
  if (deps.allowEmptyStart) {
    deps.log.warn('no backup restores; starting an EMPTY cluster because ETCD_AWS_ALLOW_EMPTY_START is set', { tried });
    return { kind: 'empty', reason: 'operator-override', attempts };
  }
  throw new NoRestorableBackupError(
    `refusing to start an empty cluster: ${attempts.length} backup(s) exist but none restores: ${tried}. ` +
      'Fix or remove the broken backups, restore one by hand (node-agent restore), or set ETCD_AWS_ALLOW_EMPTY_START=true to start empty',
  );
}
