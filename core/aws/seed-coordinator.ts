import { GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException, paginateListObjectsV2 } from '@aws-sdk/client-s3';
import type { AgentRegistration, SeedLease } from '../domain/election.js';
import type { SeedCoordinator } from '../ports.js';

/**
 * Seed lease and agent registrations as small JSON objects in the backup bucket, under
 * `<prefix><group>/bootstrap/`. The lease relies on S3 conditional writes: `If-None-Match: *` creates it
 * only if absent, `If-Match: <etag>` replaces exactly the version that was read; a lost race is a 412.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
 */
export class S3SeedCoordinator implements SeedCoordinator {
  private readonly base: string;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    prefix: string,
    groupName: string,
  ) {
    this.base = `${prefix}${groupName}/bootstrap/`;
  }

  async register(registration: AgentRegistration): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: `${this.base}agents/${registration.instanceId}.json`,
        Body: JSON.stringify(registration),
        ContentType: 'application/json',
      }),
    );
  }

  async registrations(): Promise<AgentRegistration[]> {
    const keys: string[] = [];
    for await (const page of paginateListObjectsV2({ client: this.s3 }, { Bucket: this.bucket, Prefix: `${this.base}agents/` })) {
      for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
    }
    const out: AgentRegistration[] = [];
    for (const Key of keys) {
      const body = await this.read(Key);
      if (body) out.push(JSON.parse(body.text) as AgentRegistration);
    }
    return out;
  }

  async readLease(): Promise<SeedLease | undefined> {
    const body = await this.read(`${this.base}seed-lease.json`);
    if (!body) return undefined;
    const parsed = JSON.parse(body.text) as { holder: string; expiresAt: number };
    return { holder: parsed.holder, expiresAt: parsed.expiresAt, etag: body.etag };
  }

  async writeLease(holder: string, expiresAt: number, expected: string | undefined): Promise<SeedLease | undefined> {
    try {
      const out = await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: `${this.base}seed-lease.json`,
          Body: JSON.stringify({ holder, expiresAt, writtenAt: new Date().toISOString() }),
          ContentType: 'application/json',
          ...(expected === undefined ? { IfNoneMatch: '*' } : { IfMatch: expected }),
        }),
      );
      return { holder, expiresAt, etag: out.ETag ?? '' };
    } catch (error) {
      // 412: someone else wrote first. 409: a concurrent conditional write is in flight; also a lost race.
      if (error instanceof S3ServiceException && [409, 412].includes(error.$metadata.httpStatusCode ?? 0)) return undefined;
      throw error;
    }
  }

  private async read(Key: string): Promise<{ text: string; etag: string } | undefined> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      return { text: (await out.Body?.transformToString()) ?? '', etag: out.ETag ?? '' };
    } catch (error) {
      if (error instanceof S3ServiceException && error.name === 'NoSuchKey') return undefined;
      throw error;
    }
  }
}
