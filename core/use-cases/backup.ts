import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import {
  backupKeys,
  pairBackups,
  selectForDeletion,
  snapshotFolder,
  unchangedSince,
  type BackupMetadata,
  type RetentionPolicy,
} from '../domain/backups.js';
import { hexMemberId, type Member } from '../domain/members.js';
import { EtcdUnavailableError, describeError } from '../errors.js';
import type { TerminationNotice } from '../domain/lifecycle-events.js';
import type { EtcdCluster, EtcdSnapshots, LifecycleActions, SnapshotStore } from '../ports.js';
import { SnapshotVerifier } from '../snapshot-verifier.js';
import { discoverCluster, type DiscoveryDeps } from './discover.js';

export interface BackupDeps extends DiscoveryDeps {
  readonly openCluster: (endpoints: readonly string[]) => EtcdCluster & EtcdSnapshots;
  readonly store: SnapshotStore;
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
    };

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
 * Takes a verified snapshot of the cluster and streams it to S3, then prunes old backups.
 *
 * 1. find the live cluster and its leader 2. Status before (revision) 3. skip when nothing changed since the
 * newest valid backup 4. stream Maintenance.Snapshot through the verifier into a multipart upload (aborted
 * on any error, so no object that looks valid is left) 5. Status after 6. write the metadata object last
 * 7. apply retention, now that a fresh valid backup exists.
 */
export async function takeBackup(deps: BackupDeps, options: { force?: boolean } = {}): Promise<BackupSummary> {
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
    // The content hash is worth computing (a scan of every key) only when the revision says nothing changed.
    const sameRevision = latest !== undefined && latest.clusterId === clusterId && BigInt(latest.revision.after) === BigInt(before.revision);
    const hashNow = !options.force && sameRevision ? await etcd.hashKV(leader.endpoint, before.revision).then((h) => h.hash, () => undefined) : undefined;
    if (!options.force && newest && latest && unchangedSince(latest, { clusterId, revision: before.revision, hashKV: hashNow })) {
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
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
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
 * Terminating:Wait: the hook's heartbeat is recorded now and every `heartbeatMs` while the snapshot streams
 * (however long the database takes), then the action is completed and the instance goes. A failure records a
 * heartbeat and is rethrown (Lambda retries, then the on-failure destination), so the instance keeps waiting
 * for the retry.
 */
export async function takeFinalBackup(
  notice: TerminationNotice,
  deps: BackupDeps & { readonly lifecycle: LifecycleActions; readonly heartbeatMs: number },
): Promise<BackupSummary> {
  const fields = { instanceId: notice.instanceId, groupName: notice.groupName };
  const beat = () =>
    deps.lifecycle.heartbeat(notice).catch((error: unknown) => deps.log.warn('lifecycle heartbeat failed', { ...fields, error: describeError(error) }));
  await beat();
  const timer = setInterval(() => void beat(), deps.heartbeatMs);
  let summary: BackupSummary;
  try {
    summary = await takeBackup(deps, { force: true });
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
