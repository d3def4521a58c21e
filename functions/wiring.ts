/** Adapter wiring shared by the handlers, built once per cold start. */
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { stsEndpoint } from '../core/aws/caller-identity.js';
import { RootCertificate } from '../core/aws/root-certificate.js';
import { S3BackupLock } from '../core/aws/backup-lock.js';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { DEFAULT_STORE_OPTIONS, S3SnapshotStore } from '../core/aws/s3-snapshot-store.js';
import type { BackupSettings, FunctionConfig } from '../core/config.js';
import { backupLockKey } from '../core/domain/backups.js';
import { Etcd3Cluster, type EtcdClientOptions } from '../core/etcd/cluster.js';
import { ConfigError } from '../core/errors.js';
import type { Log } from '../core/logger.js';
import type { BackupDeps } from '../core/use-cases/backup.js';

/** How a function reaches etcd: its client options, and what to await before each invocation's etcd calls. */
export interface EtcdAccess {
  readonly options: EtcdClientOptions;
  ready(): Promise<void>;
}

/**
 * Plaintext, or (ETCD_AWS_TLS=on) TLS with the control plane's `root` certificate, asked of the issuer with
 * the function's own role credentials at the first invocation and renewed when a third of it is left. While a
 * stack migrates (`migrating`) the functions stay on plaintext: the members launched before the migration
 * serve nothing else.
 */
export function etcdAccess(config: FunctionConfig, log: Log): EtcdAccess {
  if (config.tlsIssuer === undefined || config.scheme === 'http') return { options: config, ready: () => Promise.resolve() };
  const region = process.env.AWS_REGION;
  if (!region) throw new ConfigError('AWS_REGION is required with ETCD_AWS_TLS=on (Lambda sets it): the certificate request is signed for its STS');
  const lambda = new LambdaClient({});
  const root = new RootCertificate(
    {
      lambda,
      functionName: config.tlsIssuer,
      region,
      stsEndpoint: stsEndpoint(region),
      credentials: async () => {
        const c = await lambda.config.credentials();
        return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken };
      },
    },
    log,
  );
  return { options: { ...config, tls: () => root.credentials() }, ready: () => root.ready() };
}

/** What the backup use case needs: used by the backup handler and by lifecycle's final backup. */
export function createBackupDeps(
  config: FunctionConfig,
  backup: BackupSettings,
  log: Log,
  etcd: EtcdClientOptions,
  inventory = new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
): BackupDeps {
  const s3 = new S3Client({});
  return {
    inventory,
    openCluster: (endpoints) => new Etcd3Cluster(endpoints, etcd),
    store: new S3SnapshotStore(s3, backup.bucket, { ...DEFAULT_STORE_OPTIONS, kmsKeyId: backup.kmsKeyId }),
    lock: new S3BackupLock(s3, backup.bucket, backupLockKey(backup.prefix, config.asgName)),
    groupName: config.asgName,
    prefix: backup.prefix,
    endpoints: config.endpoints,
    clientPort: config.clientPort,
    scheme: config.scheme,
    retention: backup.retention,
    snapshotTimeoutMs: backup.snapshotTimeoutMs,
    now: () => Date.now(),
    log,
  };
}
