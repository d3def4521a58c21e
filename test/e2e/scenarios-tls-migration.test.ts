import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { etcdClusterTls } from '../../testbed/pki.js';
import { quietSandbox, runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

// `npm run sandbox -- enable-tls`: the README's migration of a running plaintext stack to TLS, on real etcd
// of the selected release, under writes.
let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-tls-migration');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('TLS migration scenario', () => {
  it('enable-tls: plaintext → migrating → on by two rolling updates; same cluster, quorum throughout, no write lost, TLS peers, authentication on', async () => {
    const { summary } = await runObserved(sb, 'enable-tls', async (observed) => {
      // Independently of the scenario's own checks: every member's URLs are https, and etcd asks for users.
      const cluster = new Etcd3Cluster(observed.sandbox.endpoints(), { dialTimeoutMs: 1000, callTimeoutMs: 3000, ...etcdClusterTls() });
      try {
        const { members } = await cluster.listMembers();
        expect(members).toHaveLength(3);
        for (const m of members) expect([...m.peerUrls, ...m.clientUrls].every((u) => u.startsWith('https://')), m.name).toBe(true);
        expect(await cluster.authEnabled()).toBe(true);
      } finally {
        cluster.close();
      }
      // Each of the two updates replaced every instance, one at a time.
      const terminations = observed.sandbox.shim.calls.filter((c) => c.action === 'CompleteLifecycleAction' && c.params.LifecycleHookName === 'etcd-terminate');
      expect(terminations).toHaveLength(6);
    });
    expect(summary.violations).toEqual([]);
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
  });

  it('skipping the migrating step (off → on) stops at the first successor, which waits and never founds a cluster; the update rolls back and the members stay', async () => {
    // Prepare
    const sandbox = await quietSandbox(sb, 'skip-tls', { tls: 'off' });
    try {
      const before = await sandbox.converge(180_000);
      const members = before.members.map((m) => m.id).sort();
      const originals = new Set(sandbox.instances().map((i) => i.instanceId));

      // Act
      const result = await sandbox.moveTls('on');

      // Assess: the TLS successor found plaintext members it could not talk to, waited, and founded nothing.
      expect(result).toBe('rolled-back');
      const successors = sandbox.fleet.list().filter((n) => !originals.has(n.instance.instanceId) && n.template.version === 2);
      expect(successors.length).toBeGreaterThan(0);
      for (const node of successors) {
        const log = readFileSync(node.logFile, 'utf8');
        expect(log).not.toContain('founding a new cluster');
        expect(log).toContain('cluster-without-quorum');
      }
      const after = await sandbox.converge(120_000);
      expect(after.members.map((m) => m.id).sort()).toEqual(members);
      expect(after.clusterIds).toEqual(before.clusterIds);
    } finally {
      await sandbox.close();
    }
  });
});
