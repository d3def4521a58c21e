import { createHash } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CreateBucketCommand, ListMultipartUploadsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { S3SnapshotStore } from '../../core/aws/s3-snapshot-store.js';
import { backupKeys, pairBackups, snapshotFolder } from '../../core/domain/backups.js';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { SnapshotIntegrityError } from '../../core/errors.js';
import { silentLog } from '../../core/logger.js';
import type { SnapshotStream } from '../../core/ports.js';
import { applyRetention, takeBackup, type BackupDeps, type BackupSummary } from '../../core/use-cases/backup.js';
import { build } from '../../scripts/build.mjs';
import type { SimulatedGroup } from '../../testbed/aws-world.js';
import { clusterContents } from '../../testbed/data.js';
import { EtcdTestCluster } from '../../testbed/etcd.js';
import { handlerEnv, invokeBundle } from '../../testbed/lambda.js';
import { etcdutlRestore } from '../../testbed/restore.js';
import { etcdRelease } from '../../testbed/tools.js';
import { groupWithCluster, openBed, uniqueName, type Bed } from '../support/testbed.js';

let bed: Bed;
let bundle: string;
let group: SimulatedGroup;
let etcd: EtcdTestCluster;
const s3 = new S3Client({ forcePathStyle: true });
const bucket = uniqueName('backups').toLowerCase();
const KEYS = 10_000;
const leased = new Map<string, string>();

const invoke = (event: unknown = {}, extra: Record<string, string> = {}) =>
  invokeBundle<BackupSummary>(bundle, event, handlerEnv({ ETCD_ASG_NAME: group.groupName, BACKUP_BUCKET: bucket, ETCD_AWS_CALL_TIMEOUT_MS: '3000', ...extra }));

function deps(overrides: Partial<BackupDeps> = {}): BackupDeps {
  return {
    inventory: new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
    openCluster: (endpoints) => new Etcd3Cluster(endpoints, { dialTimeoutMs: 1000, callTimeoutMs: 3000 }),
    store: new S3SnapshotStore(s3, bucket, { kmsKeyId: undefined, partSize: 5 * 1024 * 1024, queueSize: 2 }),
    groupName: group.groupName,
    prefix: '',
    endpoints: undefined,
    clientPort: 2379,
    retention: { keepLast: 10, hourlyForMs: 24 * 3_600_000, dailyForMs: 7 * 86_400_000, orphanAfterMs: 86_400_000 },
    snapshotTimeoutMs: 120_000,
    now: () => Date.now(),
    log: silentLog,
    ...overrides,
  };
}


beforeAll(async () => {
  bed = openBed('backup');
  bundle = (await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true })).functions.backup ?? '';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  ({ group, etcd } = await groupWithCluster(bed, 3));
  // 10k keys of 1 KiB (a database of well over one 5 MiB part), 200 of them on a lease.
  const client = new Etcd3({ hosts: etcd.clientUrls() });
  try {
    const lease = client.lease(3600, { autoKeepAlive: false });
    const leaseId = await lease.grant();
    for (let i = 0; i < KEYS; i += 250) {
      await Promise.all(
        Array.from({ length: 250 }, (_, j) => {
          const key = `data/${String(i + j).padStart(6, '0')}`;
          const value = `${key}:${'x'.repeat(1000)}`;
          if ((i + j) % 50 === 0) {
            leased.set(key, leaseId);
            return lease.put(key).value(value).exec();
          }
          return client.put(key).value(value).exec();
        }),
      );
    }
  } finally {
    client.close();
  }
});

afterAll(async () => {
  await bed.dispose();
});

describe('backup', () => {
  let first: BackupSummary;

  it('uploads a verified snapshot, with its exact revision and data version, that etcdutl restores with every key, value and lease', async () => {
    // Act: a manual invoke of the built handler
    const { result, lines } = await invoke();
    first = result;

    // Assess: the summary, the metrics, and the metadata written next to the snapshot
    if (result.status !== 'uploaded') throw new Error(`expected an upload, got ${JSON.stringify(result)}`);
    expect(result.size % 512).toBe(32);
    expect(result.size).toBeGreaterThan(10 * 1024 * 1024);
    expect(result.revision.exact).toBe(true);
    expect(lines.some((l) => '_aws' in l && l.BackupBytes === result.size && l.BackupAgeSeconds === 0)).toBe(true);
    const store = deps().store;
    const meta = await store.readMetadata(result.metadataKey);
    const release = etcdRelease();
    expect(meta).toMatchObject({ key: result.key, size: result.size, sha256: result.sha256, etcdVersion: release.version, groupName: group.groupName });
    // The data's version (what decides which etcd can restore it). No etcd release (3.5 to 3.7) puts a header
    // with the revision in the snapshot stream: the revision is exact because nothing was written meanwhile.
    expect(meta.clusterVersion).toBe(`${release.minor}.0`);
    expect(meta.revision).toEqual({ before: meta.revision.after, after: meta.revision.after, header: null, exact: true });
    expect(meta.members).toHaveLength(3);
    // The content at that revision, what lets the next run skip only when nothing changed
    expect(meta.hashKV).toMatchObject({ revision: meta.revision.after, hash: expect.stringMatching(/^\d+$/) as unknown });

    // Download, check the object's SHA-256, restore it with etcd's own tool and serve it
    const file = path.join(bed.workDir, 'downloaded.db');
    await pipeline(await store.download(result.key), createWriteStream(file));
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(result.sha256);
    const ip = bed.network.hostAddress(50);
    const runDir = path.join(bed.workDir, 'restored');
    await etcdutlRestore(file, path.join(runDir, 'restored.etcd'), 'restored', ip);
    const restored = await EtcdTestCluster.start({ nodes: [{ name: 'restored', ip }], workDir: runDir, processes: bed.processes });
    try {
      const original = await clusterContents(etcd.clientUrls(), 'data');
      const back = await clusterContents([restored.node('restored').clientUrl], 'data');
      expect(back.count).toBe(KEYS);
      expect(back.digest).toBe(original.digest);
      expect(back.leases).toEqual(leased);
    } finally {
      await restored.teardown({ keepFiles: true });
    }
  });

  it('skips when the revision has not changed: the data is fully backed up (age 0 for the alarm), and says how old the newest backup is', async () => {
    const { result, lines } = await invoke();
    expect(result).toMatchObject({ status: 'skipped', reason: 'revision-unchanged', latestKey: first.status === 'uploaded' ? first.key : '', ageSeconds: 0 });
    expect(result.status === 'skipped' ? result.newestBackupAgeSeconds : -1).toBeGreaterThanOrEqual(0);
    expect(lines.filter((l) => '_aws' in l).map((l) => l.BackupAgeSeconds)).toEqual([0]);
  });

  it('a flipped byte: no valid backup appears, the multipart upload is aborted, the error names the cause', async () => {
    const before = await deps().store.list(snapshotFolder('', group.groupName));
    await expect(takeBackup(deps({ openCluster: corrupting('flip') }), { force: true })).rejects.toThrow(/SHA-256 mismatch/);
    await expectNothingNew(before);
  });

  it('a stream cut short: no valid backup appears, the multipart upload is aborted, the error names the cause', async () => {
    const before = await deps().store.list(snapshotFolder('', group.groupName));
    await expect(takeBackup(deps({ openCluster: corrupting('truncate') }), { force: true })).rejects.toThrow(SnapshotIntegrityError);
    await expectNothingNew(before);
  });

  it('retention over 1,500+ objects keeps exactly the newest 10, one per hour for a day and one per day for a week', async () => {
    // Prepare: 760 backups (1,520 objects) every 15 minutes over the last ~8 days, in their own group folder
    const groupName = uniqueName('retention');
    const now = Date.parse('2026-11-26T12:07:00Z');
    const made: Array<{ at: number; keys: { snapshotKey: string; metadataKey: string } }> = [];
    for (let i = 0; i < 760; i++) {
      const at = now - i * 15 * 60_000;
      made.push({ at, keys: backupKeys('', groupName, new Date(at), String(100_000 - i)) });
    }
    for (let i = 0; i < made.length; i += 40) {
      await Promise.all(
        made.slice(i, i + 40).flatMap(({ keys }) => [
          s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.snapshotKey, Body: 'x' })),
          s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.metadataKey, Body: '{}' })),
        ]),
      );
    }
    const store = deps().store;
    const folder = snapshotFolder('', groupName);
    expect((await store.list(folder)).length).toBe(1520);

    // Act
    const deleted = await applyRetention(folder, { store, retention: deps().retention, now: () => now, log: silentLog });

    // Assess, with buckets computed independently from ISO strings
    const hourly = new Set<string>();
    const daily = new Set<string>();
    const expected = new Set<string>();
    made.forEach(({ at, keys }, i) => {
      const iso = new Date(at).toISOString();
      if (i < 10) expected.add(keys.snapshotKey);
      if (now - at <= 24 * 3_600_000 && !hourly.has(iso.slice(0, 13))) {
        hourly.add(iso.slice(0, 13));
        expected.add(keys.snapshotKey);
      }
      if (now - at <= 7 * 86_400_000 && !daily.has(iso.slice(0, 10))) {
        daily.add(iso.slice(0, 10));
        expected.add(keys.snapshotKey);
      }
    });
    const left = pairBackups(await store.list(folder));
    expect(new Set(left.backups.map((b) => b.snapshotKey))).toEqual(expected);
    expect(left.orphans).toEqual([]);
    expect(deleted).toBe(1520 - 2 * expected.size);
  });
});

/** The real snapshot stream of the leader, with one byte flipped or the last bytes cut off. */
function corrupting(mode: 'flip' | 'truncate') {
  return (endpoints: readonly string[]) => {
    const real = new Etcd3Cluster(endpoints, { dialTimeoutMs: 1000, callTimeoutMs: 3000 });
    const snapshot = real.snapshot.bind(real);
    real.snapshot = async (endpoint: string, timeoutMs: number): Promise<SnapshotStream> => {
      const original = await snapshot(endpoint, timeoutMs);
      let seen = 0;
      const damage = new Transform({
        transform(chunk: Buffer, _enc, callback) {
          const copy = Buffer.from(chunk);
          if (mode === 'flip' && seen <= 4096 && seen + copy.length > 4096) copy[4096 - seen] = (copy[4096 - seen] ?? 0) ^ 0x01;
          seen += copy.length;
          callback(null, copy);
        },
        flush(callback) {
          callback();
        },
      });
      const stream = mode === 'truncate' ? Readable.from(dropLast(original.stream, 700)) : original.stream.pipe(damage);
      return { stream, headerRevision: () => original.headerRevision() };
    };
    return real;
  };
}

async function* dropLast(source: AsyncIterable<Buffer>, bytes: number): AsyncGenerator<Buffer> {
  let held = Buffer.alloc(0);
  for await (const chunk of source) {
    held = Buffer.concat([held, chunk]);
    if (held.length > bytes) {
      yield held.subarray(0, held.length - bytes);
      held = Buffer.from(held.subarray(held.length - bytes));
    }
  }
}

async function expectNothingNew(before: ReadonlyArray<{ key: string }>): Promise<void> {
  const after = await deps().store.list(snapshotFolder('', group.groupName));
  expect(after.map((o) => o.key).sort()).toEqual(before.map((o) => o.key).sort());
  const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  expect(uploads.Uploads ?? []).toEqual([]);
}
