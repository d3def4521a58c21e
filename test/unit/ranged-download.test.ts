import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, S3Client, S3ServiceException, type GetObjectCommandInput } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { downloadRanged, totalFromContentRange } from '../../core/aws/ranged-download.js';
import { DownloadInterruptedError } from '../../core/errors.js';

const s3mock = mockClient(S3Client);
const s3 = () => new S3Client({ region: 'us-east-1' });

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * S3 serving one object by ranges, each answer after a random delay (ranges finish out of order).
 * `cutRange` sends that range's start only; `failRange` refuses it; every request's Range and If-Match is kept.
 */
function fakeObject(data: Buffer, options: { cutRange?: number; failRange?: number } = {}) {
  const requests: Array<{ range: string | undefined; ifMatch: string | undefined }> = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  s3mock.on(GetObjectCommand).callsFake(async (input: GetObjectCommandInput) => {
    requests.push({ range: input.Range, ifMatch: input.IfMatch });
    concurrent += 1;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    await sleep(Math.random() * 5);
    concurrent -= 1;
    const [, from, to] = /^bytes=(\d+)-(\d+)$/.exec(input.Range ?? '') ?? [];
    if (data.length === 0) throw new S3ServiceException({ name: 'InvalidRange', $fault: 'client', $metadata: { httpStatusCode: 416 } });
    const start = Number(from);
    const end = Math.min(Number(to), data.length - 1);
    if (start === options.failRange) throw new Error('connection reset');
    const slice = data.subarray(start, end + 1);
    const body = start === options.cutRange ? slice.subarray(0, 100) : slice;
    return {
      Body: Readable.from([body.subarray(0, 1000), body.subarray(1000)]) as never,
      ContentLength: slice.length,
      ContentRange: `bytes ${start}-${end}/${data.length}`,
      ETag: '"v1"',
    };
  });
  return { requests, maxConcurrent: () => maxConcurrent };
}

beforeEach(() => s3mock.reset());

describe('downloadRanged', () => {
  it.each([
    ['many ranges and a short last one', 10 * 4096 + 17, 4096, 3],
    ['exactly two ranges', 2 * 4096, 4096, 4],
    ['one range larger than the object', 3000, 4096, 4],
    ['one at a time', 5 * 4096, 4096, 1],
  ])('%s: the bytes arrive whole and in order, later ranges ask for the first one\'s ETag', async (_name, size, rangeSize, concurrency) => {
    const data = randomBytes(size);
    const fake = fakeObject(data);
    const got = await readAll(await downloadRanged(s3(), 'b', 'k.db', { rangeSize, concurrency }));
    expect(got.equals(data)).toBe(true);
    expect(fake.requests.map((r) => r.range)).toEqual(Array.from({ length: Math.ceil(size / rangeSize) }, (_, i) => `bytes=${i * rangeSize}-${i === 0 ? rangeSize - 1 : Math.min(size, (i + 1) * rangeSize) - 1}`));
    expect(fake.requests.slice(1).every((r) => r.ifMatch === '"v1"')).toBe(true);
    // The first GET, then at most `concurrency` at once.
    expect(fake.maxConcurrent()).toBeLessThanOrEqual(concurrency);
  });

  it('a range that ends early fails the stream with a DownloadInterruptedError naming how far it got', async () => {
    fakeObject(randomBytes(6 * 4096), { cutRange: 3 * 4096 });
    const stream = await downloadRanged(s3(), 'b', 'k.db', { rangeSize: 4096, concurrency: 2 });
    const attempt = readAll(stream);
    await expect(attempt).rejects.toThrow(DownloadInterruptedError);
    await expect(attempt).rejects.toThrow(/s3:\/\/b\/k\.db: the download ended 3996 bytes short of range 12288-16383 after 12288 of 24576 bytes/);
  });

  it('a range S3 fails fails the stream with a DownloadInterruptedError (a retry may succeed)', async () => {
    fakeObject(randomBytes(6 * 4096), { failRange: 4 * 4096 });
    const attempt = readAll(await downloadRanged(s3(), 'b', 'k.db', { rangeSize: 4096, concurrency: 3 }));
    await expect(attempt).rejects.toThrow(DownloadInterruptedError);
    await expect(attempt).rejects.toThrow(/the download failed after \d+ of 24576 bytes: .*connection reset/);
  });

  it('an empty object is an empty stream (its checks condemn it), not an interruption to retry forever', async () => {
    fakeObject(Buffer.alloc(0));
    expect((await readAll(await downloadRanged(s3(), 'b', 'k.db', { rangeSize: 4096, concurrency: 2 }))).length).toBe(0);
  });

  it.each([
    ['bytes 0-8388607/123456789', 123456789],
    ['bytes 0-99/100', 100],
    [undefined, undefined],
    ['bytes */100', undefined],
  ])('reads the total size from Content-Range %s', (header, total) => {
    expect(totalFromContentRange(header)).toBe(total);
  });
});
