import { createHash } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { etcd3Credentials } from './pki.js';

export interface Contents {
  readonly count: number;
  /** SHA-256 over every key and value under the prefix, in key order. */
  readonly digest: string;
  /** The lease of each leased key. */
  readonly leases: Map<string, string>;
}

/** Every key and value under `prefix/`, hashed, plus the lease of each leased key: to compare clusters. */
export async function clusterContents(endpoints: readonly string[], prefix: string): Promise<Contents> {
  const client = new Etcd3({ hosts: [...endpoints], ...etcd3Credentials(), grpcOptions: { 'grpc.max_receive_message_length': -1 } });
  try {
    const all = await client.getAll().prefix(`${prefix}/`).exec();
    const hash = createHash('sha256');
    const leases = new Map<string, string>();
    for (const kv of all.kvs) {
      hash.update(kv.key).update('\0').update(kv.value).update('\n');
      if (kv.lease !== '0') leases.set(kv.key.toString(), kv.lease);
    }
    return { count: all.kvs.length, digest: hash.digest('hex'), leases };
  } finally {
    client.close();
  }
}
