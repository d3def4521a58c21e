import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
  type UploadPartCommandInput,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { MIN_PART_SIZE, uploadMultipart } from '../../core/aws/multipart-upload.js';

const s3mock = mockClient(S3Client);
const s3 = () => new S3Client({ region: 'us-east-1' });
const target = { bucket: 'b', key: 'k.db', contentType: 'application/octet-stream', encryption: {} };
const PART = MIN_PART_SIZE;

/** A body of `bytes` random bytes read in chunks of `chunk` bytes. */
function body(bytes: number, chunk: number): { data: Buffer; stream: Readable } {
  const data = randomBytes(bytes);
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes; i += chunk) pieces.push(data.subarray(i, i + chunk));
  return { data, stream: Readable.from(pieces) };
}

/**
 * S3 as the uploader sees it: each UploadPart answers after a random delay (parts finish out of order), and
 * records the part's bytes when the request is sent and again when it answers, so a buffer reused while its
 * part is still in flight shows.
 */
function fakeS3(options: { failPart?: number; noETag?: number } = {}) {
  const parts = new Map<number, { sent: string; answered: string; checksum: unknown }>();
  let concurrent = 0;
  let maxConcurrent = 0;
  s3mock.on(CreateMultipartUploadCommand).resolves({ UploadId: 'up-1' });
  s3mock.on(UploadPartCommand).callsFake(async (input: UploadPartCommandInput) => {
    const bodyBytes = input.Body as Buffer;
    const sent = createHash('sha256').update(bodyBytes).digest('hex');
    concurrent += 1;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    await sleep(Math.random() * 5);
    concurrent -= 1;
    if (input.PartNumber === options.failPart) throw new Error(`part ${input.PartNumber} refused`);
    parts.set(input.PartNumber ?? 0, { sent, answered: createHash('sha256').update(bodyBytes).digest('hex'), checksum: input.ChecksumAlgorithm });
    return { ETag: input.PartNumber === options.noETag ? undefined : `"etag-${input.PartNumber}"`, ChecksumCRC32: `crc-${input.PartNumber}` };
  });
  s3mock.on(CompleteMultipartUploadCommand).resolves({});
  s3mock.on(AbortMultipartUploadCommand).resolves({});
  return { parts, maxConcurrent: () => maxConcurrent };
}

/** The object S3 would assemble: the parts' bytes in part order, as sent. */
function assembled(data: Buffer, partSize: number): string[] {
  const hashes: string[] = [];
  for (let i = 0; i < Math.max(1, data.length); i += partSize) hashes.push(createHash('sha256').update(data.subarray(i, i + partSize)).digest('hex'));
  return hashes;
}

beforeEach(() => s3mock.reset());

describe('uploadMultipart', () => {
  it.each([
    ['several parts and a short last one, chunks across part boundaries', 3 * PART + 12345, 32 * 1024 + 7, 2],
    ['exactly two parts', 2 * PART, 32 * 1024, 2],
    ['one short part', 1000, 100, 2],
    ['seven parts, one at a time', 7 * PART - 1, 1024 * 1024, 1],
    ['seven parts, four at a time, chunks larger than a part', 7 * PART + 1, PART + 3, 4],
  ])('%s: every part holds its bytes from send to answer, in order, with at most queueSize in flight', async (_name, bytes, chunk, queueSize) => {
    const fake = fakeS3();
    const { data, stream } = body(bytes, chunk);
    await uploadMultipart(s3(), target, stream, { partSize: PART, queueSize });

    const expected = assembled(data, PART);
    const parts = [...fake.parts.entries()].sort((a, b) => a[0] - b[0]);
    expect(parts.map(([n]) => n)).toEqual(expected.map((_, i) => i + 1));
    expect(parts.map(([, p]) => p.sent)).toEqual(expected);
    expect(parts.map(([, p]) => p.answered)).toEqual(expected);
    expect(parts.every(([, p]) => p.checksum === 'CRC32')).toBe(true);
    expect(fake.maxConcurrent()).toBeLessThanOrEqual(queueSize);

    expect(s3mock.commandCalls(CreateMultipartUploadCommand)[0]?.args[0].input).toMatchObject({ Bucket: 'b', Key: 'k.db', ChecksumAlgorithm: 'CRC32' });
    const complete = s3mock.commandCalls(CompleteMultipartUploadCommand)[0]?.args[0].input;
    expect(complete?.MultipartUpload?.Parts).toEqual(expected.map((_, i) => ({ PartNumber: i + 1, ETag: `"etag-${i + 1}"`, ChecksumCRC32: `crc-${i + 1}` })));
    expect(s3mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(0);
  });

  it('a body that fails (a snapshot failing its check at the end) aborts the upload and rethrows that error; nothing completes', async () => {
    fakeS3();
    const failing = Readable.from(
      (function* () {
        yield randomBytes(PART + 10);
        throw new Error('snapshot SHA-256 mismatch');
      })(),
    );
    await expect(uploadMultipart(s3(), target, failing, { partSize: PART, queueSize: 2 })).rejects.toThrow('snapshot SHA-256 mismatch');
    expect(s3mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    expect(s3mock.commandCalls(AbortMultipartUploadCommand)[0]?.args[0].input).toEqual({ Bucket: 'b', Key: 'k.db', UploadId: 'up-1' });
  });

  it('a part S3 refuses aborts the upload and rethrows the refusal; nothing completes', async () => {
    fakeS3({ failPart: 2 });
    const { stream } = body(5 * PART, 64 * 1024);
    await expect(uploadMultipart(s3(), target, stream, { partSize: PART, queueSize: 2 })).rejects.toThrow('part 2 refused');
    expect(s3mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    expect(s3mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('a part S3 answers without an ETag aborts the upload: it could not be completed with that part', async () => {
    fakeS3({ noETag: 3 });
    const { stream } = body(4 * PART, 64 * 1024);
    await expect(uploadMultipart(s3(), target, stream, { partSize: PART, queueSize: 2 })).rejects.toThrow(/answered part 3 of s3:\/\/b\/k\.db without an ETag/);
    expect(s3mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    expect(s3mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('takes exactly maxParts full parts and refuses the byte after them, before sending it', async () => {
    fakeS3();
    const limit = { partSize: PART, queueSize: 2, maxParts: 3 };
    await expect(uploadMultipart(s3(), target, body(3 * PART, 64 * 1024).stream, limit)).resolves.toBeUndefined();
    expect(s3mock.commandCalls(UploadPartCommand)).toHaveLength(3);

    s3mock.reset();
    fakeS3();
    await expect(uploadMultipart(s3(), target, body(3 * PART + 1, 64 * 1024).stream, limit)).rejects.toThrow(/more than 3 parts of 5242880 bytes: raise the part size/);
    expect(s3mock.commandCalls(UploadPartCommand)).toHaveLength(3);
    expect(s3mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    expect(s3mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('refuses parts smaller than S3 takes, before creating anything', async () => {
    fakeS3();
    await expect(uploadMultipart(s3(), target, body(10, 10).stream, { partSize: 1024, queueSize: 2 })).rejects.toThrow(/at least 5242880 bytes/);
    expect(s3mock.commandCalls(CreateMultipartUploadCommand)).toHaveLength(0);
  });
});
