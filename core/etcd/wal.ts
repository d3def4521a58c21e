import { open, readdir } from 'node:fs/promises';
import path from 'node:path';

/** What an etcd data dir says about itself. */
export type LocalMemberData =
  | { readonly kind: 'none' }
  | { readonly kind: 'member'; readonly memberId: string; readonly clusterId: string }
  /** `noWal`: a member dir without any WAL (an interrupted first start, or a damaged data dir). */
  | { readonly kind: 'unreadable'; readonly reason: string; readonly noWal?: true };

const METADATA_TYPE = 1n;

function varint(buf: Buffer, at: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  for (let i = at; i < buf.length && shift < 70n; i++) {
    const byte = buf[i] as number;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value, next: i + 1 };
    shift += 7n;
  }
  throw new Error('truncated varint');
}

/** Decodes the fields of a protobuf message into field number → varint or bytes (enough for WAL records). */
function fields(buf: Buffer): Map<number, bigint | Buffer> {
  const out = new Map<number, bigint | Buffer>();
  let at = 0;
  while (at < buf.length) {
    const tag = varint(buf, at);
    const field = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    if (wire === 0) {
      const v = varint(buf, tag.next);
      out.set(field, v.value);
      at = v.next;
    } else if (wire === 2) {
      const len = varint(buf, tag.next);
      const end = len.next + Number(len.value);
      if (end > buf.length) throw new Error('truncated field');
      out.set(field, buf.subarray(len.next, end));
      at = end;
    } else {
      throw new Error(`unexpected protobuf wire type ${wire}`);
    }
  }
  return out;
}

/**
 * The member ID and cluster ID recorded in an etcd data dir, read from the metadata record that starts every
 * WAL file (walpb.Record{type: metadata, data: etcdserverpb.Metadata{NodeID, ClusterID}}). etcd writes it
 * before it serves anything, the same way in 3.4 through 3.6, so it identifies the data without starting etcd.
 */
export async function readLocalMember(dataDir: string): Promise<LocalMemberData> {
  const walDir = path.join(dataDir, 'member', 'wal');
  let names: string[];
  try {
    names = (await readdir(walDir)).filter((n) => n.endsWith('.wal')).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      return { kind: 'unreadable', reason: `cannot list ${walDir}: ${(error as Error).message}` };
    }
    try {
      const entries = await readdir(dataDir);
      return entries.includes('member')
        ? { kind: 'unreadable', reason: `${dataDir}/member has no WAL: an interrupted start or a damaged data dir`, noWal: true }
        : { kind: 'none' };
    } catch (inner) {
      if ((inner as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
      return { kind: 'unreadable', reason: `cannot list ${dataDir}: ${(inner as Error).message}` };
    }
  }
  const first = names[0];
  if (first === undefined) return { kind: 'unreadable', reason: `${walDir} holds no WAL file` };
  const file = path.join(walDir, first);
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    let at = 0;
    for (let record = 0; record < 4 && at + 8 <= bytesRead; record++) {
      const frame = head.readBigUInt64LE(at);
      const length = Number(frame & 0x00ffffffffffffffn);
      const top = Number(frame >> 56n);
      const padding = top & 0x80 ? top & 0x7 : 0;
      const start = at + 8;
      if (length === 0 || start + length > bytesRead) break;
      const rec = fields(head.subarray(start, start + length));
      if (rec.get(1) === METADATA_TYPE) {
        const data = rec.get(3);
        if (!Buffer.isBuffer(data)) break;
        const meta = fields(data);
        const memberId = meta.get(1);
        const clusterId = meta.get(2);
        if (typeof memberId !== 'bigint' || typeof clusterId !== 'bigint') break;
        return { kind: 'member', memberId: memberId.toString(), clusterId: clusterId.toString() };
      }
      at = start + length + padding;
    }
    return { kind: 'unreadable', reason: `${file} does not start with a WAL metadata record` };
  } catch (error) {
    return { kind: 'unreadable', reason: `${file} cannot be parsed: ${(error as Error).message}` };
  } finally {
    await handle.close();
  }
}
