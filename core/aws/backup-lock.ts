import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { BackupLockState } from '../domain/backups.js';
import type { BackupLock } from '../ports.js';

/**
 * The backup lock as one JSON object in the backup bucket, `{holder, expiresAt}`, written with S3 conditional
 * writes like the seed lease: `If-None-Match: *` creates it only if absent, `If-Match: <etag>` replaces exactly
 * the version that was read; a lost race is a 412 (or a 409 while another conditional write is in flight).
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
 */
export class S3BackupLock implements BackupLock {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    readonly key: string,
  ) {}

  async read(): Promise<BackupLockState | undefined> {
    let text: string;
    let etag: string;
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key }));
      text = (await out.Body?.transformToString()) ?? '';
      etag = out.ETag ?? '';
    } catch (error) {
      if (error instanceof S3ServiceException && error.name === 'NoSuchKey') return undefined;
      throw error;
    }
    try {
      const parsed = JSON.parse(text) as { holder?: unknown; expiresAt?: unknown };
      return { holder: String(parsed.holder), expiresAt: typeof parsed.expiresAt === 'number' ? parsed.expiresAt : Number.NaN, etag };
    } catch {
      // Not ours to interpret: an expiry nobody can read lets the lock be taken over by its ETag.
      return { holder: 'unreadable', expiresAt: Number.NaN, etag };
    }
  }

  async write(holder: string, expiresAt: number, expected: string | undefined): Promise<BackupLockState | undefined> {
    try {
      const out = await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key,
          Body: JSON.stringify({ holder, expiresAt, writtenAt: new Date().toISOString() }),
          ContentType: 'application/json',
          ...(expected === undefined ? { IfNoneMatch: '*' } : { IfMatch: expected }),
        }),
      );
      return { holder, expiresAt, etag: out.ETag ?? '' };
    } catch (error) {
      if (error instanceof S3ServiceException && [409, 412].includes(error.$metadata.httpStatusCode ?? 0)) return undefined;
      throw error;
    }
  }

  /**
   * Read, compare, delete: a plain DeleteObject after checking the ETag (conditional deletes are not what every
   * S3-compatible store accepts). The window between the two calls cannot lose another holder's lock: ours
   * outlives this invocation (BACKUP_LOCK_TTL_MS), so nobody can have taken it over meanwhile.
   */
  async release(lock: BackupLockState): Promise<'released' | 'not-held'> {
    const current = await this.read();
    if (current?.etag !== lock.etag) return 'not-held';
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key }));
    return 'released';
  }
}
