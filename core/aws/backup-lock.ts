import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { BackupLockState } from '../domain/backups.js';
import type { BackupLock } from '../ports.js';

/**
 * The backup lock as one JSON object in the backup bucket, `{holder, expiresAt}`, written with S3 conditional
 * writes like the seed lease: `If-None-Match: *` creates it only if absent, `If-Match: <etag>` replaces exactly
 * the version that was read, and deletes only that version. A write that did not land is a lost race, for the
 * caller to read again: a 412 (another version, or, after an SDK retry, our own write that landed although its
 * response was lost), a 409 (another conditional write in flight) or a 404 on `If-Match` (the lock was released
 * meanwhile). https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
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
      if (lostRace(error)) return undefined;
      throw error;
    }
  }

  /**
   * Deletes the lock only if it is still the version we wrote (`If-Match`, which S3 supports on DeleteObject):
   * a 412 (another holder took it over) or a 404 (gone) leaves whatever is there and says 'not-held'. On the
   * versioned backup bucket the delete leaves a delete marker, which reads, and is created over, as no lock.
   */
  async release(lock: BackupLockState): Promise<'released' | 'not-held'> {
    try {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key, IfMatch: lock.etag }));
      return 'released';
    } catch (error) {
      if (lostRace(error)) return 'not-held';
      throw error;
    }
  }
}

/** 409, 412, or 404 (a conditional request on an object that is gone): the version we named is not current. */
function lostRace(error: unknown): boolean {
  return error instanceof S3ServiceException && [404, 409, 412].includes(error.$metadata.httpStatusCode ?? 0);
}
