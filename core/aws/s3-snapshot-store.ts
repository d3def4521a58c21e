import { Transform, type Readable } from 'node:stream';
import { DeleteObjectsCommand, GetObjectCommand, PutObjectCommand, S3Client, paginateListObjectsV2 } from '@aws-sdk/client-s3';
import { BackupMetadataSchema, type BackupMetadata } from '../domain/backups.js';
import { uploadMultipart } from './multipart-upload.js';
import { DownloadInterruptedError, SnapshotIntegrityError, describeError } from '../errors.js';
import type { SnapshotStore } from '../ports.js';

export interface S3StoreOptions {
  /** SSE-KMS key (ID or ARN); when absent objects use the bucket's default encryption. */
  readonly kmsKeyId: string | undefined;
  /** Part size of multipart uploads; peak memory is partSize × (queueSize + 1), the part buffers reused. */
  readonly partSize: number;
  readonly queueSize: number;
}

/**
 * Uploads: 5 MiB parts (S3's least), three at a time, through a pool of four reused buffers: 20 MiB whatever
 * the database size, and three requests to S3 at once. Against 8 MiB parts two at a time (24 MiB) it was as
 * fast and kept the backup's peak under 150 MiB (bench/). Downloads are one streaming GET: parallel ranged
 * GETs could not be measured against the emulator (bench/README.md).
 */
export const DEFAULT_STORE_OPTIONS: S3StoreOptions = {
  kmsKeyId: undefined,
  partSize: 5 * 1024 * 1024,
  queueSize: 3,
};

/** Backups in S3: multipart uploads through a fixed pool of part buffers (uploadMultipart), listings that follow every page. */
export class S3SnapshotStore implements SnapshotStore {
  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
    private readonly options: S3StoreOptions = DEFAULT_STORE_OPTIONS,
  ) {}

  private encryption() {
    return this.options.kmsKeyId ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: this.options.kmsKeyId } : {};
  }

  async list(folder: string): Promise<Array<{ key: string; lastModified: number }>> {
    const out: Array<{ key: string; lastModified: number }> = [];
    for await (const page of paginateListObjectsV2({ client: this.s3, pageSize: 1000 }, { Bucket: this.bucket, Prefix: folder })) {
      for (const o of page.Contents ?? []) {
        if (o.Key) out.push({ key: o.Key, lastModified: o.LastModified?.getTime() ?? 0 });
      }
    }
    return out;
  }

  async readMetadata(key: string): Promise<BackupMetadata> {
    const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    const text = (await out.Body?.transformToString()) ?? '';
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new SnapshotIntegrityError(`backup metadata s3://${this.bucket}/${key} is not JSON`, { cause: error });
    }
    const parsed = BackupMetadataSchema.safeParse(value);
    if (!parsed.success) {
      throw new SnapshotIntegrityError(`backup metadata s3://${this.bucket}/${key} is malformed: ${parsed.error.issues[0]?.message ?? ''}`);
    }
    return parsed.data;
  }

  async upload(key: string, body: Readable): Promise<void> {
    await uploadMultipart(this.s3, { bucket: this.bucket, key, contentType: 'application/octet-stream', encryption: this.encryption() }, body, this.options);
  }

  async writeMetadata(key: string, metadata: BackupMetadata): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: JSON.stringify(metadata, null, 2),
        ContentType: 'application/json',
        ...this.encryption(),
      }),
    );
  }

  async delete(keys: readonly string[]): Promise<number> {
    let deleted = 0;
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const out = await this.s3.send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
      );
      if (out.Errors && out.Errors.length > 0) {
        throw new Error(`could not delete ${out.Errors.length} objects, e.g. ${out.Errors[0]?.Key ?? '?'}: ${out.Errors[0]?.Message ?? ''}`);
      }
      deleted += batch.length;
    }
    return deleted;
  }

  /**
   * The object's bytes. A download that fails or ends before the object's length fails with a
   * DownloadInterruptedError: it says nothing about the object (unlike bytes that arrive whole and fail
   * their checks), so a caller may try again rather than give the backup up.
   */
  async download(key: string): Promise<Readable> {
    const url = `s3://${this.bucket}/${key}`;
    const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    if (!out.Body) throw new DownloadInterruptedError(`${url}: S3 returned no body`);
    const expected = out.ContentLength;
    let received = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        received += chunk.length;
        callback(null, chunk);
      },
      flush(callback) {
        if (expected !== undefined && received < expected) {
          callback(new DownloadInterruptedError(`${url}: the download ended after ${received} of ${expected} bytes`));
          return;
        }
        callback();
      },
    });
    const body = out.Body as Readable;
    body.on('error', (error) => {
      counted.destroy(new DownloadInterruptedError(`${url}: the download failed after ${received} of ${expected ?? '?'} bytes: ${describeError(error)}`, { cause: error }));
    });
    // A consumer that gives up (a failed check, a full disk) closes the connection too.
    counted.on('close', () => body.destroy());
    return body.pipe(counted);
  }
}
