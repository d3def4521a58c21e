import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BackupMetadata } from '../../core/domain/backups.js';
import { parseEtcdVersion, type EtcdVersion } from '../../core/domain/versions.js';
import { DownloadInterruptedError, SnapshotIntegrityError } from '../../core/errors.js';
import { RestoreFailedError, classifyRestoreToolFailure } from '../../core/etcd/restore-tool.js';
import { silentLog } from '../../core/logger.js';
import type { SnapshotStore } from '../../core/ports.js';
import { NoRestorableBackupError, RestoreInterruptedError, seedFromBackups, type RestoreDeps, type Restorer } from '../../core/use-cases/restore.js';

/** A valid etcd snapshot: whole pages, then the SHA-256 of them. `fill` makes each backup's bytes its own. */
function snapshotBytes(fill: number): Buffer {
  const pages = Buffer.alloc(1024, fill);
  return Buffer.concat([pages, createHash('sha256').update(pages).digest()]);
}

const FOLDER = 'g/snapshots/';
const key = (n: number) => `${FOLDER}20261126T1${n}0000000Z-r${String(n * 100).padStart(20, '0')}.db`;

function metadata(n: number, bytes: Buffer): BackupMetadata {
  return {
    format: 'etcd-aws/backup-v1',
    bucket: 'b',
    key: key(n),
    groupName: 'g',
    clusterId: '12',
    etcdVersion: '3.6.16',
    revision: { before: String(n * 100), after: String(n * 100), header: null, exact: true },
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    createdAt: `2026-11-26T1${n}:00:00.000Z`,
    durationMs: 1,
    sourceMember: { id: '1', name: 'i-a', endpoint: 'http://10.0.0.1:2379' },
    members: [],
  };
}

/** What a store call does on its next use: succeed, or fail the way S3 or the network does. */
type Fault = 'reset-mid-download' | 'throttled' | 'flipped-byte' | 'malformed-metadata';

/**
 * Two backups, 1 (older) and 2 (newest). `faults` lists, per backup, what its next downloads (or metadata
 * reads) do, one entry per call; an empty list means every call succeeds.
 */
function world(faults: Record<number, Fault[]>, options: { allowEmptyStart?: boolean; restorer?: Restorer['restore'] } = {}) {
  const bytes = { 1: snapshotBytes(1), 2: snapshotBytes(2) } as Record<number, Buffer>;
  const restored: string[] = [];
  const nextFault = (n: number) => faults[n]?.shift();
  const store: SnapshotStore = {
    bucket: 'b',
    list: () => Promise.resolve([1, 2].flatMap((n) => [{ key: key(n), lastModified: n }, { key: `${key(n)}.meta.json`, lastModified: n }])),
    readMetadata: (metaKey) => {
      const n = metaKey === `${key(2)}.meta.json` ? 2 : 1;
      const fault = faults[n]?.[0];
      if (fault === 'throttled') {
        faults[n]?.shift();
        return Promise.reject(Object.assign(new Error('Please reduce your request rate.'), { name: 'SlowDown' }));
      }
      if (fault === 'malformed-metadata') return Promise.reject(new SnapshotIntegrityError(`backup metadata s3://b/${metaKey} is malformed`));
      return Promise.resolve(metadata(n, bytes[n] ?? Buffer.alloc(0)));
    },
    download: (snapshotKey) => {
      const n = snapshotKey === key(2) ? 2 : 1;
      const content = bytes[n] ?? Buffer.alloc(0);
      const fault = nextFault(n);
      if (fault === 'reset-mid-download') {
        // The connection drops after the first part: what a reset socket or a killed proxy looks like.
        return Promise.resolve(
          new Readable({
            read() {
              this.push(content.subarray(0, 512));
              this.destroy(new DownloadInterruptedError(`s3://b/${snapshotKey}: the download ended after 512 of ${content.length} bytes`));
            },
          }),
        );
      }
      if (fault === 'flipped-byte') {
        const bad = Buffer.from(content);
        bad[100] = (bad[100] ?? 0) ^ 0xff;
        return Promise.resolve(Readable.from([bad]));
      }
      return Promise.resolve(Readable.from([content]));
    },
    upload: () => Promise.reject(new Error('not used')),
    writeMetadata: () => Promise.reject(new Error('not used')),
    delete: () => Promise.reject(new Error('not used')),
  };
  const restorer: Restorer = {
    tool: 'etcdutl',
    version: parseEtcdVersion('3.6.16') as EtcdVersion,
    restore:
      options.restorer ??
      (async (file, target) => {
        await mkdir(target.dataDir, { recursive: true });
        await writeFile(path.join(target.dataDir, 'from'), readFileSync(file).subarray(0, 1));
      }),
  };
  return {
    restored,
    deps: (dataDir: string): RestoreDeps => ({
      store,
      prefix: '',
      groupName: 'g',
      restorer,
      dataDir,
      allowEmptyStart: options.allowEmptyStart ?? false,
      bumpRevision: undefined,
      retries: { count: 3, initialDelayMs: 1, maxDelayMs: 2 },
      log: silentLog,
    }),
  };
}

const target = { name: 'i-a', peerUrl: 'http://10.0.0.1:2380', token: 't' };

describe('seedFromBackups: which failures fall back to an older backup', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'restore-test-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = () => path.join(dir, 'data');
  /** Which backup's bytes the data dir was restored from. */
  const restoredFrom = () => readFileSync(path.join(dataDir(), 'from'))[0];

  it('restores the newest backup after its download was cut once: an interrupted download says nothing about the backup', async () => {
    const { deps } = world({ 2: ['reset-mid-download'] });
    const seeded = await seedFromBackups(target, deps(dataDir()));
    expect(seeded).toMatchObject({ kind: 'restored', key: key(2) });
    expect(restoredFrom()).toBe(2);
  });

  it('never falls back to an older backup, nor starts empty, while the newest cannot be read: it fails retryably', async () => {
    const { deps } = world({ 2: Array<Fault>(10).fill('reset-mid-download') }, { allowEmptyStart: true });
    const error = await seedFromBackups(target, deps(dataDir())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RestoreInterruptedError);
    expect((error as RestoreInterruptedError).retryable).toBe(true);
    expect((error as Error).message).toContain(key(2));
    expect((error as Error).message).toMatch(/not falling back to an older backup/i);
  });

  it('retries a throttled metadata read instead of skipping the newest backup', async () => {
    const { deps } = world({ 2: ['throttled', 'throttled'] });
    expect(await seedFromBackups(target, deps(dataDir()))).toMatchObject({ kind: 'restored', key: key(2) });
  });

  it('retries a restore tool that was killed or ran out of disk instead of skipping the newest backup', async () => {
    let calls = 0;
    const { deps } = world(
      {},
      {
        restorer: async (file, t) => {
          calls += 1;
          if (calls === 1) throw new RestoreFailedError('etcdutl snapshot restore failed: killed by SIGKILL', { retryable: true });
          await mkdir(t.dataDir, { recursive: true });
          await writeFile(path.join(t.dataDir, 'from'), readFileSync(file).subarray(0, 1));
        },
      },
    );
    expect(await seedFromBackups(target, deps(dataDir()))).toMatchObject({ kind: 'restored', key: key(2) });
    expect(restoredFrom()).toBe(2);
  });

  it.each<[string, Fault]>([
    ['a backup whose bytes fail their checksum', 'flipped-byte'],
    ['a backup whose metadata is malformed', 'malformed-metadata'],
  ])('falls back to the previous backup past %s, and records why', async (_name, fault) => {
    const { deps } = world({ 2: [fault, fault, fault, fault] });
    const seeded = await seedFromBackups(target, deps(dataDir()));
    expect(seeded).toMatchObject({ kind: 'restored', key: key(1) });
    expect(seeded.attempts[0]).toMatchObject({ key: key(2), outcome: 'failed' });
    expect(restoredFrom()).toBe(1);
  });

  it('falls back past a backup the restore tool rejects', async () => {
    const { deps } = world(
      {},
      {
        restorer: async (file, t) => {
          if (readFileSync(file)[0] === 2) throw new RestoreFailedError('etcdutl snapshot restore failed: bad snapshot', { retryable: false });
          await mkdir(t.dataDir, { recursive: true });
          await writeFile(path.join(t.dataDir, 'from'), readFileSync(file).subarray(0, 1));
        },
      },
    );
    expect(await seedFromBackups(target, deps(dataDir()))).toMatchObject({ kind: 'restored', key: key(1) });
  });

  it('refuses an empty start when every backup is invalid', async () => {
    const { deps } = world({ 1: Array<Fault>(4).fill('flipped-byte'), 2: Array<Fault>(4).fill('flipped-byte') });
    await expect(seedFromBackups(target, deps(dataDir()))).rejects.toBeInstanceOf(NoRestorableBackupError);
  });
});

describe('classifyRestoreToolFailure: what says the snapshot is bad, what says this machine is', () => {
  it.each([
    ['exit 1, the snapshot rejected', { code: 1, signal: null, stderr: 'Error: snapshot file integrity check failed' }, 'snapshot'],
    ['exit 1, a bolt database error', { code: 1, signal: null, stderr: 'panic: invalid page type: 0: 10' }, 'snapshot'],
    ['killed (out of memory, a shutdown)', { code: null, signal: 'SIGKILL', stderr: '' }, 'local'],
    ['disk full', { code: 1, signal: null, stderr: 'Error: write /var/lib/etcd/member/snap/db: no space left on device' }, 'local'],
    ['read-only file system', { code: 1, signal: null, stderr: 'mkdir /var/lib/etcd.restoring: read-only file system' }, 'local'],
    ['permission denied', { code: 1, signal: null, stderr: 'open /var/lib/etcd.restoring/member: permission denied' }, 'local'],
    ['an I/O error', { code: 1, signal: null, stderr: 'write db: input/output error' }, 'local'],
    ['could not be started', { code: 'ENOENT', signal: null, stderr: '' }, 'local'],
  ] as const)('%s', (_name, failure, expected) => {
    expect(classifyRestoreToolFailure(failure)).toBe(expected);
  });
});
