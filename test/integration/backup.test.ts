import { createHash } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, DeleteObjectCommand, ListMultipartUploadsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BackupLock } from '../../core/aws/backup-lock.js';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { DEFAULT_STORE_OPTIONS, S3SnapshotStore } from '../../core/aws/s3-snapshot-store.js';
import { backupKeys, backupLockKey, pairBackups, snapshotFolder } from '../../core/domain/backups.js';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { SnapshotIntegrityError } from '../../core/errors.js';
import { silentLog } from '../../core/logger.js';
import type { SnapshotStream } from '../../core/ports.js';
import { applyRetention, takeBackup, takeFinalBackup, type BackupDeps, type BackupSummary } from '../../core/use-cases/backup.js';
import { build } from '../../scripts/build.mjs';
import type { SimulatedGroup } from '../../testbed/aws-world.js';
import { clusterContents } from '../../testbed/data.js';
import { EtcdTestCluster } from '../../testbed/etcd.js';
import { handlerEnv, invokeBundle } from '../../testbed/lambda.js';
import { etcdutlRestore } from '../../testbed/restore.js';
import { etcdRelease } from '../../testbed/tools.js';
import { waitFor } from '../../testbed/wait.js';
import { recordingLog } from '../support/fixtures.js';
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
    store: new S3SnapshotStore(s3, bucket, { ...DEFAULT_STORE_OPTIONS, queueSize: 2 }),
    lock: new S3BackupLock(s3, bucket, backupLockKey('', group.groupName)),
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
    expect(result.status === 'skipped' && result.reason === 'revision-unchanged' ? result.newestBackupAgeSeconds : -1).toBeGreaterThanOrEqual(0);
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

describe('single-flight backups', () => {
  const folder = () => snapshotFolder('', group.groupName);
  const lockKey = () => backupLockKey('', group.groupName);
  const change = async (key: string) => {
    const client = new Etcd3({ hosts: etcd.clientUrls() });
    try {
      await client.put(key).value(new Date().toISOString()).exec();
    } finally {
      client.close();
    }
  };

  it('of two backup invocations at once, exactly one uploads; the other skips, naming the holder, and reports no backup age', async () => {
    // Prepare: a change since the newest backup, so both scheduled runs have something to back up, and S3
    // through a gate that keeps the first upload from starting until the other invocation has returned
    await change('single-flight/concurrent');
    const before = pairBackups(await deps().store.list(folder()));
    const gate = await UploadGate.start(process.env.AWS_ENDPOINT_URL as string);
    try {
      // Act: two scheduled invocations of the built handler at once
      const runs = [invoke({}, { AWS_ENDPOINT_URL_S3: gate.endpoint }), invoke({}, { AWS_ENDPOINT_URL_S3: gate.endpoint })];
      await Promise.race(runs.map((r) => r.catch(() => undefined)));
      gate.open();
      const invocations = await Promise.all(runs);

      // Assess: one upload started and one backup pair appeared; the other run skipped, naming the winner
      const uploaded = invocations.filter((i) => i.result.status === 'uploaded');
      const skipped = invocations.filter((i) => i.result.status === 'skipped');
      expect(invocations.map((i) => (i.result.status === 'skipped' ? `skipped:${i.result.reason}` : i.result.status)).sort()).toEqual([
        'skipped:backup-in-progress',
        'uploaded',
      ]);
      expect(gate.held).toHaveLength(1);
      const after = pairBackups(await deps().store.list(folder()));
      expect(after.backups).toHaveLength(before.backups.length + 1);
      expect(after.orphans).toEqual(before.orphans);
      const winner = uploaded[0]!;
      const loser = skipped[0]!;
      const taken = winner.lines.find((l) => l.message === 'backup lock taken');
      expect(taken).toMatchObject({ reason: 'no-lock', lockKey: lockKey() });
      const skip = loser.result;
      if (skip.status !== 'skipped' || skip.reason !== 'backup-in-progress') throw new Error('unreachable');
      expect(skip.holder).toBe(taken?.holder);
      expect(skip.lockKey).toBe(lockKey());
      // A minute after the winner's deadline (the test bed gives an invocation 60 s), not a fixed 16 minutes
      expect(Date.parse(skip.lockExpiresAt)).toBeGreaterThan(Date.now());
      expect(Date.parse(skip.lockExpiresAt)).toBeLessThanOrEqual(Date.now() + 120_000);
      expect(loser.lines.some((l) => l.message === 'backup skipped: another backup holds the lock' && l.reason === 'backup-in-progress' && l.holder === skip.holder)).toBe(true);
      // The alarm's metric comes from the run that backed up, never from the one that skipped
      const metricsOf = (i: (typeof invocations)[number]) => i.lines.filter((l) => '_aws' in l);
      expect(metricsOf(winner).map((l) => l.BackupAgeSeconds)).toEqual([0]);
      expect(metricsOf(loser).some((l) => 'BackupAgeSeconds' in l)).toBe(false);
      expect(metricsOf(loser).map((l) => l.BackupSkippedInProgress)).toEqual([1]);
      // Released at the end
      expect(await deps().lock.read()).toBeUndefined();
    } finally {
      await gate.close();
    }
  });

  it('takes over a lock whose holder died (expired), backs up and releases it', async () => {
    // Prepare: a lock left by an invocation that timed out, expired a second ago
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: lockKey(), Body: JSON.stringify({ holder: 'req-dead/00000000', expiresAt: Date.now() - 1000 }) }));
    const before = pairBackups(await deps().store.list(folder())).backups.length;

    // Act
    const { result, lines } = await invoke({ force: true });

    // Assess
    expect(result.status).toBe('uploaded');
    expect(lines.find((l) => l.message === 'backup lock taken')).toMatchObject({ reason: 'expired', from: 'req-dead/00000000' });
    expect(pairBackups(await deps().store.list(folder())).backups).toHaveLength(before + 1);
    expect(await deps().lock.read()).toBeUndefined();
  });

  it('a final backup waits for the backup in progress, then backs up after it and lets the instance go', async () => {
    // Prepare: a scheduled backup in progress (its lock), a change it may not hold, the hook's side of Auto Scaling
    const lock = deps().lock;
    const scheduled = await lock.write('req-scheduled/00000000', Date.now() + 120_000, undefined);
    if (!scheduled) throw new Error('the lock was not free');
    await change('single-flight/final');
    const before = pairBackups(await deps().store.list(folder())).backups.length;
    const calls: string[] = [];
    const lifecycle = {
      heartbeat: () => Promise.resolve(void calls.push('heartbeat')),
      complete: () => Promise.resolve((calls.push('complete'), 'completed' as const)),
    };
    const log = recordingLog();
    const notice = { groupName: group.groupName, instanceId: group.instances[0]!.instanceId, hookName: 'etcd-terminate', token: 't', time: undefined };

    // Act: the final backup starts while the lock is held, and waits
    const final = takeFinalBackup(notice, { ...deps({ log }), lifecycle, heartbeatMs: 60_000 }, { holder: 'req-final/00000000', lockWait: { waitMs: 60_000, pollMs: 100, sleep } });
    await waitFor('the final backup to wait for the lock', () => log.lines.some((l) => l.message === 'waiting for the backup lock' && l.fields.holder === scheduled.holder), { timeoutMs: 30_000 });
    expect(pairBackups(await deps().store.list(folder())).backups).toHaveLength(before);
    expect(calls).toEqual(['heartbeat']);
    const releasedAt = Date.now();
    expect(await lock.release(scheduled)).toBe('released');
    const summary = await final;

    // Assess: backed up after the release, then the action completed
    if (summary.status !== 'uploaded') throw new Error(`expected an upload, got ${JSON.stringify(summary)}`);
    expect(pairBackups(await deps().store.list(folder())).backups).toHaveLength(before + 1);
    expect(Date.parse((await deps().store.readMetadata(summary.metadataKey)).createdAt)).toBeGreaterThanOrEqual(releasedAt);
    expect(calls.at(-1)).toBe('complete');
    expect(await lock.read()).toBeUndefined();
  });

  afterAll(async () => {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: lockKey() })).catch(() => undefined);
  });
});

/**
 * S3 between the backup function and the emulator that holds each CreateMultipartUpload (a backup starting
 * its upload) until `open()`; or once two are held (two backups upload at once: nothing is left to show),
 * or after a minute, so nothing hangs. A backup thus still holds its lock when the other invocation decides,
 * however fast this machine is.
 */
class UploadGate {
  readonly held: string[] = [];
  private opened = false;
  private waiting: Array<() => void> = [];

  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
    private readonly timer: NodeJS.Timeout,
  ) {}

  static async start(upstream: string): Promise<UploadGate> {
    const target = new URL(upstream);
    const started: { gate?: UploadGate } = {};
    const server = createServer((req, res) => void started.gate?.forward(target, req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const timer = setTimeout(() => started.gate?.open(), 60_000);
    started.gate = new UploadGate(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, timer);
    return started.gate;
  }

  open(): void {
    this.opened = true;
    for (const go of this.waiting.splice(0)) go();
  }

  private async forward(target: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'POST' && /[?&]uploads(=|&|$)/.test(req.url ?? '')) {
      this.held.push(req.url ?? '');
      if (this.held.length >= 2) this.open();
      if (!this.opened) await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    const out = request({ hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on('error', (error) => res.writeHead(502).end(String(error)));
    req.pipe(out);
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.open();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

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
