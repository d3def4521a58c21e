import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsInstanceInventory } from '../../core/aws/inventory.js';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { hexMemberId } from '../../core/domain/members.js';
import { silentLog } from '../../core/logger.js';
import { discoverCluster } from '../../core/use-cases/discover.js';
import type { SimulatedGroup } from '../../testbed/aws-world.js';
import type { EtcdTestCluster } from '../../testbed/etcd.js';
import { etcdctlBin } from '../../testbed/tools.js';
import { waitFor } from '../../testbed/wait.js';
import { groupWithCluster, openBed, uniqueName, type Bed } from '../support/testbed.js';

let bed: Bed;
let group: SimulatedGroup;
let etcd: EtcdTestCluster;
const timeouts = { dialTimeoutMs: 1000, callTimeoutMs: 2000 };
const deps = () => ({
  inventory: new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
  openCluster: (endpoints: readonly string[]) => new Etcd3Cluster(endpoints, timeouts),
  clientPort: 2379,
  log: silentLog,
});

beforeAll(async () => {
  bed = openBed('smoke');
  ({ group, etcd } = await groupWithCluster(bed, 3));
});

afterAll(async () => {
  await bed.dispose();
});

describe('test bed smoke', () => {
  it('discovers a 3-node etcd cluster on the emulated group instances through the production code', async () => {
    // Prepare: what etcd itself says about its members
    const etcdctl = JSON.parse(
      execFileSync(etcdctlBin(), ['--endpoints', etcd.clientUrls().join(','), 'member', 'list', '-w', 'json'], {
        encoding: 'utf8',
      }),
    ) as { header: { cluster_id: number }; members: Array<{ ID: number; name: string }> };

    // Act
    const view = await discoverCluster(group.groupName, deps());

    // Assess: every instance has its loopback IP as private IP, is probed, and is paired with its member
    expect(view.endpoints).toEqual(group.instances.map((i) => `http://${i.privateIp}:2379`).sort());
    if (!view.cluster.live) throw new Error(`no live cluster: ${view.cluster.reason}`);
    expect(view.cluster.members.map((m) => m.name).sort()).toEqual(group.instances.map((i) => i.instanceId).sort());
    expect(view.cluster.membership.matched).toHaveLength(3);
    expect(view.cluster.membership.orphans).toEqual([]);
    expect(view.cluster.membership.voting).toBe(3);
    // etcdctl's JSON output carries IDs as numbers that lose precision; compare the names it reports and
    // check that our IDs round-trip through etcdctl's hex form.
    expect(etcdctl.members.map((m) => m.name).sort()).toEqual(view.cluster.members.map((m) => m.name).sort());
    const table = execFileSync(etcdctlBin(), ['--endpoints', etcd.clientUrls().join(','), 'member', 'list'], { encoding: 'utf8' });
    for (const m of view.cluster.members) expect(table).toContain(`${hexMemberId(m.id)}, started, ${m.name},`);
  });

  it('still finds the cluster with one node down, and none with a majority down', async () => {
    const [first, second] = group.instances;
    await etcd.kill(first!.instanceId);
    // If the killed node led, the other two elect a new leader first (longer on a loaded machine).
    const degraded = await waitFor('the two survivors to answer as a live cluster', async () => {
      const view = await discoverCluster(group.groupName, deps());
      return view.cluster.live ? view : undefined;
    });
    expect(degraded.cluster.live).toBe(true);

    await etcd.kill(second!.instanceId);
    const lost = await discoverCluster(group.groupName, deps());
    // The survivor still answers MemberList from its own state; without quorum it is not a live cluster.
    expect(lost.cluster).toMatchObject({ live: false, reason: expect.stringContaining('no etcd member with quorum') as unknown });
  });

  it('round-trips a multipart S3 upload through the emulator', async () => {
    const s3 = new S3Client({ forcePathStyle: true });
    const Bucket = uniqueName('bucket').toLowerCase();
    await s3.send(new CreateBucketCommand({ Bucket }));
    const body = randomBytes(12 * 1024 * 1024 + 123);
    const parts: number[] = [];
    const upload = new Upload({ client: s3, params: { Bucket, Key: 'blob', Body: body }, partSize: 5 * 1024 * 1024 });
    upload.on('httpUploadProgress', (p) => p.part !== undefined && parts.push(p.part));
    await upload.done();

    const got = await s3.send(new GetObjectCommand({ Bucket, Key: 'blob' }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
    expect(new Set(parts)).toEqual(new Set([1, 2, 3]));
    expect(got.ETag).toMatch(/-3"$/); // an S3 multipart ETag: md5 of the part md5s, dash, part count
  });
});
