import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';

export interface MultipartTarget {
  readonly bucket: string;
  readonly key: string;
  readonly contentType: string;
  readonly encryption: { readonly ServerSideEncryption?: ServerSideEncryption; readonly SSEKMSKeyId?: string };
}

export interface MultipartOptions {
  /** Bytes per part (S3: at least 5 MiB except the last, at most 10,000 parts). */
  readonly partSize: number;
  /** Parts uploading at once. */
  readonly queueSize: number;
  /** The most parts an upload may have: S3's MAX_PARTS unless said otherwise. */
  readonly maxParts?: number;
}

/** S3's smallest part (all but the last) and its most parts per upload. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PARTS = 10_000;

/**
 * Streams `body` to S3 as a multipart upload through a fixed pool of `queueSize + 1` part buffers, reused
 * part after part: the peak memory is the pool, whatever the object's size. (lib-storage's Upload allocates a
 * new buffer per part, and concatenates the stream's chunks into it; that garbage is only collected when V8's
 * external memory has grown by 64 MiB, which added that much to the backup's peak: measured in bench/.)
 *
 * The parts carry CRC32 checksums (declared at creation, as S3 requires of an upload whose parts carry one,
 * and echoed at completion). The object appears only when the upload completes: on any failure (the body
 * fails, including a snapshot that fails verification at its end; a part fails after the SDK's retries) the
 * upload is aborted and the first error rethrown.
 */
export async function uploadMultipart(s3: S3Client, target: MultipartTarget, body: Readable, options: MultipartOptions): Promise<void> {
  if (options.partSize < MIN_PART_SIZE || !Number.isInteger(options.queueSize) || options.queueSize < 1) {
    throw new Error(`multipart upload needs parts of at least ${MIN_PART_SIZE} bytes and a queue of 1 or more (got ${options.partSize}, ${options.queueSize})`);
  }
  const { bucket: Bucket, key: Key } = target;
  const maxParts = options.maxParts ?? MAX_PARTS;
  const created = await s3.send(
    new CreateMultipartUploadCommand({ Bucket, Key, ContentType: target.contentType, ChecksumAlgorithm: ChecksumAlgorithm.CRC32, ...target.encryption }),
  );
  const UploadId = created.UploadId;
  if (!UploadId) throw new Error(`S3 returned no upload ID for s3://${Bucket}/${Key}`);

  const pool: Buffer[] = [];
  let allocated = 0;
  const inFlight = new Set<Promise<void>>();
  const parts: CompletedPart[] = [];
  let failure: { error: unknown } | undefined;

  const freeBuffer = async (): Promise<Buffer> => {
    for (;;) {
      if (failure) throw failure.error;
      const buffer = pool.pop();
      if (buffer) return buffer;
      if (allocated < options.queueSize + 1 || inFlight.size === 0) {
        allocated += 1;
        return Buffer.allocUnsafe(options.partSize);
      }
      // Every buffer is a part in flight: the next one back frees one.
      await Promise.race(inFlight);
    }
  };

  const send = async (buffer: Buffer, length: number, PartNumber: number): Promise<void> => {
    if (PartNumber > maxParts) throw new Error(`s3://${Bucket}/${Key} would need more than ${maxParts} parts of ${options.partSize} bytes: raise the part size`);
    while (inFlight.size >= options.queueSize) await Promise.race(inFlight);
    if (failure) throw failure.error;
    const part = s3
      .send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body: buffer.subarray(0, length), ChecksumAlgorithm: ChecksumAlgorithm.CRC32 }))
      .then(
        (out) => {
          // S3 always names a part by its ETag; without it the upload could not be completed with that part.
          if (!out.ETag) failure ??= { error: new Error(`S3 answered part ${PartNumber} of s3://${Bucket}/${Key} without an ETag: the upload cannot be completed`) };
          else parts.push({ PartNumber, ETag: out.ETag, ...(out.ChecksumCRC32 ? { ChecksumCRC32: out.ChecksumCRC32 } : {}) });
        },
        (error: unknown) => {
          failure ??= { error };
        },
      )
      .finally(() => {
        // Only now, the request done (retries included), may the buffer hold another part.
        inFlight.delete(part);
        pool.push(buffer);
      });
    inFlight.add(part);
  };

  try {
    let current = await freeBuffer();
    let filled = 0;
    let partNumber = 1;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      let offset = 0;
      while (offset < chunk.length) {
        const n = Math.min(chunk.length - offset, options.partSize - filled);
        chunk.copy(current, filled, offset, offset + n);
        filled += n;
        offset += n;
        if (filled === options.partSize) {
          await send(current, filled, partNumber);
          partNumber += 1;
          current = await freeBuffer();
          filled = 0;
        }
      }
    }
    // The last part (S3 takes a last part of any size; an empty body is one empty part).
    if (filled > 0 || partNumber === 1) await send(current, filled, partNumber);
    else pool.push(current);
    await Promise.all(inFlight);
    if (failure) throw failure.error;
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
  } catch (error) {
    failure ??= { error };
    await Promise.allSettled(inFlight);
    // The upload's own error is the one to report; parts an abort failed to remove are invisible (no
    // object appears) and the bucket's lifecycle rule deletes them a day later.
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
    throw error;
  }
}
