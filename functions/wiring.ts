/** Adapter wiring shared by the handlers, built once per cold start. */
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { S3BackupLock } from '../core/aws/backup-lock.js';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { DEFAULT_STORE_OPTIONS, S3SnapshotStore } from '../core/aws/s3-snapshot-store.js';
import type { BackupSettings, FunctionConfig } from '../core/config.js';
import { backupLockKey } from '../core/domain/backups.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import type { Log } from '../core/logger.js';
import type { BackupDeps } from '../core/use-cases/backup.js';

/** What the backup use case needs: used by the backup handler and by lifecycle's final backup. */
export function createBackupDeps(
  config: FunctionConfig,
  backup: BackupSettings,
  log: Log,
  inventory = new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
): BackupDeps {
  const s3 = new S3Client({});
  return {
    inventory,
    openCluster: (endpoints) => new Etcd3Cluster(endpoints, config),
    store: new S3SnapshotStore(s3, backup.bucket, { ...DEFAULT_STORE_OPTIONS, kmsKeyId: backup.kmsKeyId }),
    lock: new S3BackupLock(s3, backup.bucket, backupLockKey(backup.prefix, config.asgName)),
    groupName: config.asgName,
    prefix: backup.prefix,
    endpoints: config.endpoints,
    clientPort: config.clientPort,
    retention: backup.retention,
    snapshotTimeoutMs: backup.snapshotTimeoutMs,
    now: () => Date.now(),
    log,
  };
}
