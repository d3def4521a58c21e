import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { BackupMetadata } from '../../core/domain/backups.js';
import { silentLog } from '../../core/logger.js';
import type { EtcdCluster, EtcdSnapshots, MemberStatus, SnapshotStore } from '../../core/ports.js';
import type { BackupDeps } from '../../core/use-cases/backup.js';
import { groupInstance, member, memoryLock } from './fixtures.js';

/** A snapshot stream that passes the verifier: whole pages, then the SHA-256 of them. */
function snapshotBytes(): Buffer {
  const pages = Buffer.alloc(512, 7);
  return Buffer.concat([pages, createHash('sha256').update(pages).digest()]);
}

/**
 * The cluster as the backup sees it, at revision 100, whose content hashes to `hash`; the store holds a backup
 * of the same cluster at the same revision, whose content hashed to `backedUp`.
 */
export function backupWorld(hash: string, backedUp: BackupMetadata['hashKV']) {
  const uploads: string[] = [];
  const status: MemberStatus = {
    endpoint: 'http://10.0.0.1:2379',
    memberId: '1',
    clusterId: '12',
    leaderId: '1',
    revision: '100',
    raftIndex: '500',
    raftTerm: '2',
    version: '3.6.16',
    dbSize: 544,
    dbSizeInUse: 544,
    isLearner: false,
  };
  const cluster = {
    listMembers: () => Promise.resolve({ clusterId: '12', members: [member('1', 'i-a', '10.0.0.1')] }),
    status: () => Promise.resolve(status),
    clusterVersion: () => Promise.resolve('3.6.0'),
    hashKV: (_endpoint: string, revision: string) => Promise.resolve({ revision, hash, compactRevision: '0' }),
    snapshot: () => Promise.resolve({ stream: Readable.from([snapshotBytes()]), headerRevision: () => undefined }),
    close: () => undefined,
  } as unknown as EtcdCluster & EtcdSnapshots;
  const latest = {
    format: 'etcd-aws/backup-v1',
    bucket: 'b',
    key: 'g/snapshots/20261126T120000000Z-r00000000000000000100.db',
    groupName: 'g',
    clusterId: '12',
    etcdVersion: '3.6.16',
    revision: { before: '100', after: '100', header: null, exact: true },
    ...(backedUp ? { hashKV: backedUp } : {}),
    size: 544,
    sha256: 'a'.repeat(64),
    createdAt: '2026-11-26T12:00:00.000Z',
    durationMs: 1,
    sourceMember: { id: '1', name: 'i-a', endpoint: 'http://10.0.0.1:2379' },
    members: [],
  } as BackupMetadata;
  const store: SnapshotStore = {
    bucket: 'b',
    list: () => Promise.resolve([{ key: latest.key, lastModified: 0 }, { key: `${latest.key}.meta.json`, lastModified: 0 }]),
    readMetadata: () => Promise.resolve(latest),
    upload: async (key, body) => {
      const chunks: Buffer[] = [];
      for await (const chunk of body) chunks.push(chunk as Buffer);
      uploads.push(key);
    },
    writeMetadata: () => Promise.resolve(),
    delete: () => Promise.resolve(0),
    download: () => Promise.reject(new Error('not used')),
  };
  const lock = memoryLock();
  const deps: BackupDeps = {
    inventory: { instancesOf: () => Promise.resolve([groupInstance('i-a', '10.0.0.1')]), groupOf: () => Promise.resolve('g'), instanceFacts: () => Promise.resolve(new Map()) },
    openCluster: () => cluster,
    store,
    lock,
    groupName: 'g',
    prefix: '',
    endpoints: undefined,
    clientPort: 2379,
    retention: { keepLast: 10, hourlyForMs: 0, dailyForMs: 0, orphanAfterMs: 86_400_000 },
    snapshotTimeoutMs: 10_000,
    now: () => Date.parse('2026-11-26T12:05:00Z'),
    log: silentLog,
  };
  return { deps, uploads, cluster, store, lock };
}

