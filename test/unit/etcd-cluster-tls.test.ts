import { describe, expect, it } from 'vitest';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';

describe('Etcd3Cluster with TLS credentials that cannot be read yet', () => {
  it('opens without reading them, and fails the calls that need them with why', async () => {
    let reads = 0;
    const tls = () => {
      reads += 1;
      throw new Error('no client certificate in /var/lib/etcd-aws/pki yet');
    };
    const cluster = new Etcd3Cluster(['https://127.0.0.1:1'], { dialTimeoutMs: 100, callTimeoutMs: 100, tls });
    expect(reads).toBe(0);
    await expect(cluster.status('https://127.0.0.1:1')).rejects.toThrow(/no client certificate/);
    await expect(cluster.hasQuorum()).resolves.toBe(false);
    expect(reads).toBeGreaterThan(0);
    cluster.close();
  });
});
