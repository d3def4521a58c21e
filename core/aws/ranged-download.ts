import { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DownloadInterruptedError, describeError } from '../errors.js';

export interface RangedDownloadOptions {
  /** Bytes per ranged GET (AWS's guidance for byte-range fetches: 8 or 16 MB). */
  readonly rangeSize: number;
  /** Ranged GETs in flight at once: each holds one range in memory until it is its turn. */
  readonly concurrency: number;
}

/** The object's total size from a ranged GET's `Content-Range: bytes 0-8388607/123456789`. */
export function totalFromContentRange(contentRange: string | undefined): number | undefined {
  const match = /^bytes \d+-\d+\/(\d+)$/.exec(contentRange ?? '');
  return match ? Number(match[1]) : undefined;
}

/**
 * An object's bytes, in order, fetched as ranged GETs of `rangeSize`, `concurrency` at a time (S3 serves each
 * connection at a bounded rate; parallel byte-range fetches are AWS's way to a higher total). The first
 * GET also learns the size and the ETag; the others ask for that ETag (If-Match), so an object replaced
 * meanwhile fails the download instead of mixing two objects. A GET that fails, or ends before its range
 * does, fails the stream with a DownloadInterruptedError: it says nothing about the object, so a caller may
 * try again. Memory: at most `concurrency` ranges. Destroying the stream cancels the GETs in flight.
 */
export async function downloadRanged(s3: S3Client, bucket: string, key: string, options: RangedDownloadOptions): Promise<Readable> {
  const url = `s3://${bucket}/${key}`;
  const abort = new AbortController();
  const seen: { received: number; total: number | undefined } = { received: 0, total: undefined };
  const interrupted = (detail: string, cause?: unknown) =>
    new DownloadInterruptedError(`${url}: the download ${detail} after ${seen.received} of ${seen.total ?? '?'} bytes${cause === undefined ? '' : `: ${describeError(cause)}`}`, {
      cause,
    });

  /** One range, whole, or a DownloadInterruptedError. */
  const fetchRange = async (start: number, end: number, ifMatch: string | undefined): Promise<{ bytes: Buffer; total: number | undefined; etag: string | undefined }> => {
    let out;
    try {
      out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${end}`, IfMatch: ifMatch }), { abortSignal: abort.signal });
    } catch (error) {
      throw interrupted('failed', error);
    }
    const expected = out.ContentLength ?? end - start + 1;
    const bytes = Buffer.allocUnsafe(expected);
    let filled = 0;
    try {
      for await (const chunk of (out.Body ?? []) as AsyncIterable<Buffer>) {
        if (filled + chunk.length > expected) throw new Error(`S3 sent more than the ${expected} bytes of range ${start}-${end}`);
        chunk.copy(bytes, filled);
        filled += chunk.length;
      }
    } catch (error) {
      throw interrupted('failed', error);
    }
    if (filled < expected) throw interrupted(`ended ${expected - filled} bytes short of range ${start}-${end}`);
    return { bytes, total: totalFromContentRange(out.ContentRange) ?? (start === 0 ? expected : undefined), etag: out.ETag };
  };

  let first: Awaited<ReturnType<typeof fetchRange>>;
  try {
    first = await fetchRange(0, options.rangeSize - 1, undefined);
  } catch (error) {
    // S3 answers a range of an empty object with 416: the object is empty, which is the object's fault (its
    // checks condemn it), not a download to try again.
    if (error instanceof DownloadInterruptedError && (error.cause as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode === 416) {
      return Readable.from([]);
    }
    throw error;
  }
  const total = first.total ?? first.bytes.length;
  seen.total = total;
  const ranges: Array<[number, number]> = [];
  for (let start = first.bytes.length; start < total; start += options.rangeSize) ranges.push([start, Math.min(total, start + options.rangeSize) - 1]);

  async function* bytes(): AsyncGenerator<Buffer> {
    const pending: Array<Promise<{ bytes: Buffer }>> = [];
    const fill = () => {
      while (pending.length < options.concurrency) {
        const range = ranges.shift();
        if (range === undefined) return;
        const p = fetchRange(range[0], range[1], first.etag);
        p.catch(() => undefined); // awaited in its turn; a failure before then must not go unhandled
        pending.push(p);
      }
    };
    try {
      fill();
      seen.received += first.bytes.length;
      yield first.bytes;
      for (let p = pending.shift(); p !== undefined; p = pending.shift()) {
        const range = await p;
        fill();
        seen.received += range.bytes.length;
        yield range.bytes;
      }
    } finally {
      // Done, failed, or the consumer gave up (a failed check, a full disk): stop what is still in flight.
      abort.abort();
    }
  }
  return Readable.from(bytes(), { objectMode: false, highWaterMark: 1 });
}
