import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { readLocalMember } from '../../core/etcd/wal.js';
import { EtcdTestCluster } from '../../testbed/etcd.js';
import { openBed, type Bed } from '../support/testbed.js';

let bed: Bed;
beforeAll(() => {
  bed = openBed('wal');
});
afterAll(async () => {
  await bed.dispose();
});

describe('readLocalMember', () => {
  it("reads the member and cluster IDs that etcd itself reports from a real etcd's data dir", async () => {
    const etcd = await EtcdTestCluster.start({
      nodes: [{ name: 'n1', ip: bed.network.hostAddress(1) }, { name: 'n2', ip: bed.network.hostAddress(2) }, { name: 'n3', ip: bed.network.hostAddress(3) }],
      workDir: path.join(bed.workDir, 'real'),
      processes: bed.processes,
    });
    const node = etcd.node('n2');
    const client = new Etcd3Cluster([node.clientUrl], { dialTimeoutMs: 1000, callTimeoutMs: 3000 });
    const status = await client.status(node.clientUrl);
    client.close();
    await etcd.stop('n2');

    await expect(readLocalMember(node.dataDir)).resolves.toEqual({ kind: 'member', memberId: status.memberId, clusterId: status.clusterId });
    await etcd.teardown({ keepFiles: true });
  });

  it('says none for a missing or empty data dir', async () => {
    await expect(readLocalMember(path.join(bed.workDir, 'missing'))).resolves.toEqual({ kind: 'none' });
    mkdirSync(path.join(bed.workDir, 'empty'));
    await expect(readLocalMember(path.join(bed.workDir, 'empty'))).resolves.toEqual({ kind: 'none' });
  });

  it('says unreadable, with the reason, for a member dir without WAL or with a damaged one', async () => {
    mkdirSync(path.join(bed.workDir, 'no-wal', 'member', 'snap'), { recursive: true });
    await expect(readLocalMember(path.join(bed.workDir, 'no-wal'))).resolves.toMatchObject({ kind: 'unreadable', reason: expect.stringContaining('has no WAL') as unknown });
    const walDir = path.join(bed.workDir, 'bad-wal', 'member', 'wal');
    mkdirSync(walDir, { recursive: true });
    writeFileSync(path.join(walDir, '0000000000000000-0000000000000000.wal'), Buffer.from('this is not a write-ahead log at all'));
    await expect(readLocalMember(path.join(bed.workDir, 'bad-wal'))).resolves.toMatchObject({ kind: 'unreadable' });
  });
});
