import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Etcd3 } from 'etcd3';
import { S3BackupLock } from '../../core/aws/backup-lock.js';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { DEFAULT_STORE_OPTIONS, S3SnapshotStore } from '../../core/aws/s3-snapshot-store.js';
import { backupLockKey } from '../../core/domain/backups.js';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { silentLog } from '../../core/logger.js';
import type { InstanceIdentity } from '../../core/ports.js';
import { takeBackup, type BackupSummary } from '../../core/use-cases/backup.js';
import { build } from '../../scripts/build.mjs';
import { AgentFleet } from '../../testbed/agents.js';
import { terminateInGroup } from '../../testbed/aws-world.js';
import { uniqueName, type Bed } from './testbed.js';

export const urls = (instances: readonly InstanceIdentity[]) => instances.map((i) => `http://${i.privateIp}:2379`);
export const names = (instances: readonly InstanceIdentity[]) => instances.map((i) => i.instanceId);

export const snapshotStore = (bucket: string) =>
  new S3SnapshotStore(new S3Client({ forcePathStyle: true }), bucket, { ...DEFAULT_STORE_OPTIONS, queueSize: 2 });

/** A forced backup of the group's cluster with the backup use case (as the backup function takes it). */
export async function backupNow(bucket: string, groupName: string): Promise<Extract<BackupSummary, { status: 'uploaded' }>> {
  const summary = await takeBackup(
    {
      inventory: new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
      openCluster: (e) => new Etcd3Cluster(e, { dialTimeoutMs: 1000, callTimeoutMs: 3000 }),
      store: snapshotStore(bucket),
      lock: new S3BackupLock(new S3Client({ forcePathStyle: true }), bucket, backupLockKey('', groupName)),
      groupName,
      prefix: '',
      endpoints: undefined,
      clientPort: 2379,
      retention: { keepLast: 10, hourlyForMs: 0, dailyForMs: 0, orphanAfterMs: 86_400_000 },
      snapshotTimeoutMs: 60_000,
      now: () => Date.now(),
      log: silentLog,
    },
    { force: true },
  );
  if (summary.status !== 'uploaded') throw new Error('backup was skipped');
  return summary;
}

/** Writes `count` keys `prefix/NNNNNN`, every `leasedEvery`-th one on a lease; returns the leased keys. */
export async function writeKeys(endpoints: string[], prefix: string, count: number, leasedEvery = 0): Promise<Map<string, string>> {
  const client = new Etcd3({ hosts: endpoints });
  const leased = new Map<string, string>();
  try {
    const lease = client.lease(3600, { autoKeepAlive: false });
    const leaseId = leasedEvery > 0 ? await lease.grant() : '0';
    for (let i = 0; i < count; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, count - i) }, (_, j) => {
          const key = `${prefix}/${String(i + j).padStart(6, '0')}`;
          if (leasedEvery > 0 && (i + j) % leasedEvery === 0) {
            leased.set(key, leaseId);
            return lease.put(key).value(`v-${key}`).exec();
          }
          return client.put(key).value(`v-${key}`).exec();
        }),
      );
    }
  } finally {
    client.close();
  }
  return leased;
}

/** Every instance and its disk lost at once; the group launches replacements. */
export async function loseEverything(agents: AgentFleet, groupName: string, instances: readonly InstanceIdentity[]): Promise<InstanceIdentity[]> {
  await Promise.all(instances.map((i) => agents.kill(i.instanceId)));
  for (const i of instances) agents.wipe(i.instanceId);
  const replacements: InstanceIdentity[] = [];
  for (const i of instances) {
    const r = await terminateInGroup(groupName, i.instanceId, true);
    if (!r) throw new Error('the emulated group launched no replacement');
    replacements.push(r);
  }
  return replacements;
}

/** An agent's log so far. */
export const agentLog = (agents: AgentFleet, i: InstanceIdentity) => readFileSync(agents.node(i.instanceId).logFile, 'utf8');

/** A test file's agents: the built bundle, a bucket of its own, and fleets that close after each test. */
export interface Fleets {
  readonly bucket: string;
  /** Agents with these settings (and this etcd release, when given) for the instances a test starts. */
  fleet(label: string, options?: { env?: Record<string, string>; etcdVersion?: string }): AgentFleet;
  /** Ends every fleet's agents (an afterEach). */
  closeAll(): Promise<void>;
}

export async function openFleets(bed: Bed, label: string): Promise<Fleets> {
  const { agent: bundle } = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true });
  const bucket = uniqueName(label).toLowerCase();
  await new S3Client({ forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: bucket }));
  const open: AgentFleet[] = [];
  return {
    bucket,
    fleet: (name, options = {}) => {
      const f = new AgentFleet({
        processes: bed.processes,
        workDir: path.join(bed.workDir, uniqueName(name)),
        bundle,
        bucket,
        awsEndpoint: process.env.AWS_ENDPOINT_URL as string,
        env: options.env,
        etcdVersion: options.etcdVersion,
      });
      open.push(f);
      return f;
    },
    closeAll: async () => {
      await Promise.all(open.splice(0).map((f) => f.closeAll()));
    },
  };
}
