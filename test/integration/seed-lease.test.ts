import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { S3SeedCoordinator } from '../../core/aws/seed-coordinator.js';
import { uniqueName } from '../support/testbed.js';

// The seed election is only as good as S3's conditional writes: of several agents writing the lease from
// the same read, exactly one may succeed. This checks the adapter against the emulator with real races.
const s3 = new S3Client({ forcePathStyle: true });
const bucket = uniqueName('lease').toLowerCase();

beforeAll(async () => {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});

describe('S3SeedCoordinator', () => {
  it('lets exactly one of many concurrent agents create the lease', async () => {
    const seeds = new S3SeedCoordinator(s3, bucket, 'p/', uniqueName('group'));
    const contenders = Array.from({ length: 8 }, (_, i) => `i-${i}`);
    const results = await Promise.all(contenders.map((id) => seeds.writeLease(id, Date.now() + 10_000, undefined)));
    const winners = results.filter((r) => r !== undefined);
    expect(winners).toHaveLength(1);
    expect((await seeds.readLease())?.holder).toBe(winners[0]?.holder);
  });

  it('lets exactly one of many agents take over an expired lease, and none with a stale version', async () => {
    const seeds = new S3SeedCoordinator(s3, bucket, '', uniqueName('group'));
    const first = await seeds.writeLease('i-dead', Date.now() - 1, undefined);
    expect(first).toBeDefined();
    const read = await seeds.readLease();
    const results = await Promise.all(['i-1', 'i-2', 'i-3', 'i-4'].map((id) => seeds.writeLease(id, Date.now() + 10_000, read!.etag)));
    expect(results.filter((r) => r !== undefined)).toHaveLength(1);
    await expect(seeds.writeLease('i-late', Date.now() + 10_000, read!.etag)).resolves.toBeUndefined();
  });

  it('keeps one registration per agent, the latest', async () => {
    const seeds = new S3SeedCoordinator(s3, bucket, 'x/', uniqueName('group'));
    await seeds.register({ instanceId: 'i-a', hasData: false, at: 1 });
    await seeds.register({ instanceId: 'i-b', hasData: false, at: 2 });
    await seeds.register({ instanceId: 'i-a', hasData: true, at: 3 });
    const regs = await seeds.registrations();
    expect(regs.sort((x, y) => x.instanceId.localeCompare(y.instanceId))).toEqual([
      { instanceId: 'i-a', hasData: true, at: 3 },
      { instanceId: 'i-b', hasData: false, at: 2 },
    ]);
  });
});
