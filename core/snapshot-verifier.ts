import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { SnapshotIntegrityError } from './errors.js';

const TRAILER = 32;

/**
 * Passes an etcd snapshot stream through unchanged while checking it, without holding more than 32 bytes:
 * etcd appends the SHA-256 of everything before it as the last 32 bytes, and the bbolt file is a whole
 * number of 512-byte pages, so `size % 512 == 32`. On a mismatch (a stream cut short, a flipped byte) the
 * stream fails at its end instead of ending, so an upload reading it aborts rather than completes.
 * Also computes the SHA-256 of the whole object, which the backup's metadata records for downloads.
 */
export class SnapshotVerifier extends Transform {
  // One SHA-256 pass: the content's hash state is the whole object's too, up to the trailer, so the whole
  // object's digest is a copy of it fed the trailer (Merkle–Damgård), not a second hash over every byte.
  private readonly content: Hash = createHash('sha256');
  /** The last (up to) 32 bytes seen: the trailer, once the stream ends; never hashed before we know. */
  private tail: Buffer = Buffer.alloc(0);
  private total = 0;
  private result: { size: number; sha256: string } | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.total += chunk.length;
    if (chunk.length >= TRAILER) {
      // The held-back bytes are content now; so is all of this chunk but its last 32 bytes (no copy).
      if (this.tail.length > 0) this.content.update(this.tail);
      this.content.update(chunk.subarray(0, chunk.length - TRAILER));
      this.tail = Buffer.from(chunk.subarray(chunk.length - TRAILER));
    } else {
      const joined = Buffer.concat([this.tail, chunk]);
      const cut = Math.max(0, joined.length - TRAILER);
      if (cut > 0) this.content.update(joined.subarray(0, cut));
      this.tail = joined.subarray(cut);
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.total < TRAILER || this.total % 512 !== TRAILER) {
      callback(
        new SnapshotIntegrityError(
          `snapshot stream of ${this.total} bytes is not a whole etcd snapshot (size % 512 must be 32): cut short?`,
        ),
      );
      return;
    }
    const whole = this.content.copy().update(this.tail);
    const expected = this.content.digest();
    if (!expected.equals(this.tail)) {
      callback(
        new SnapshotIntegrityError(
          `snapshot SHA-256 mismatch: content hashes to ${expected.toString('hex')}, trailer says ${this.tail.toString('hex')}`,
        ),
      );
      return;
    }
    this.result = { size: this.total, sha256: whole.digest('hex') };
    callback();
  }

  /** Size and whole-object SHA-256, once the stream ended verified; throws before that. */
  verified(): { size: number; sha256: string } {
    if (!this.result) throw new SnapshotIntegrityError('snapshot was not read to its end and verified');
    return this.result;
  }
}

/** Checks a complete snapshot in memory-sized pieces: the same rules as SnapshotVerifier, for files on disk. */
export async function verifySnapshotStream(source: AsyncIterable<Buffer>): Promise<{ size: number; sha256: string }> {
  const verifier = new SnapshotVerifier();
  const done = new Promise<void>((resolve, reject) => {
    verifier.on('error', reject);
    verifier.on('finish', resolve);
  });
  verifier.resume();
  for await (const chunk of source) {
    if (!verifier.write(chunk)) await new Promise((r) => verifier.once('drain', r));
  }
  verifier.end();
  await done;
  return verifier.verified();
}
