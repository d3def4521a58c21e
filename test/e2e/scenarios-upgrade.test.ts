import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdRelease, etcdctlBin } from '../../testbed/tools.js';
import { etcdHttpGet, etcdctlTlsArgs } from '../../testbed/pki.js';
import { quietSandbox, runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

// `npm run sandbox -- upgrade`: 3.5 → 3.6 → 3.7 by rolling updates under writes. It names its releases, so CI
// runs it once, not once per selected release.
const run = promisify(execFile);
let sb: ScenarioBed;
beforeAll(async () => {
  sb = await scenarioBed('scenarios-upgrade');
});
afterAll(async () => {
  await sb.bed.dispose();
});

describe('upgrade scenario', () => {
  it('upgrade: 3.5 → 3.6 → 3.7 one instance at a time; same cluster, no write lost, the cluster version follows only once every member runs the new minor', async () => {
    const newest = etcdRelease('3.7').version;
    const { summary } = await runObserved(sb, 'upgrade', async (observed) => {
      // Every member, asked with etcd's own tool, runs the newest release and reports its cluster version.
      const urls = observed.sandbox.endpoints();
      const { stdout } = await run(etcdctlBin('3.7'), [...etcdctlTlsArgs(), '--endpoints', urls.join(','), 'endpoint', 'status', '-w', 'json']);
      const versions = [...stdout.matchAll(/"version":"([^"]+)"/g)].map((m) => m[1]);
      expect(versions).toEqual(urls.map(() => newest));
      const cluster = (await etcdHttpGet(`${urls[0]!}/version`)) as { etcdcluster: string };
      expect(cluster.etcdcluster).toBe('3.7.0');
    });
    expect(summary.cluster.after).toBe(summary.cluster.before);
    expect(summary.writes.lost).toBe(0);
    expect(summary.etcd).toMatchObject({ from: etcdRelease('3.5').version, to: newest });
    // The cluster version went 3.5 → 3.6 → 3.7, each step only when no member ran an older minor (a member of
    // the next rollout may already have joined).
    expect(summary.etcd?.clusterVersions.map((c) => c.clusterVersion)).toEqual(['3.5', '3.6', '3.7']);
    for (const change of summary.etcd?.clusterVersions.slice(1) ?? []) {
      const minor = Number(change.clusterVersion.split('.')[1]);
      for (const server of change.servers) expect(Number(server.split('=')[1]?.split('.')[1]), `${server} at cluster version ${change.clusterVersion}`).toBeGreaterThanOrEqual(minor);
    }
  });

  it('a stack update that skips a minor (3.5 → 3.7) stops at its first successor, which refuses, abandons its launch and signals FAILURE; it rolls back and the members stay', async () => {
    // Prepare
    const sandbox = await quietSandbox(sb, 'skip', { etcdVersion: '3.5' });
    try {
      const before = await sandbox.converge(180_000);
      const members = before.members.map((m) => m.id).sort();

      // Act
      const result = await sandbox.update({ etcdVersion: '3.7' });

      // Assess: rolled back on the successor's own FAILURE (not PauseTime), the members are the same ones
      expect(result).toBe('rolled-back');
      const failure = sandbox.shim.signals.log.find((s) => s.status === 'FAILURE' && s.accepted);
      expect(failure).toBeDefined();
      expect(sandbox.shim.abandoned.has(failure!.uniqueId)).toBe(true);
      expect(readFileSync(sandbox.fleet.node(failure!.uniqueId).logFile, 'utf8')).toContain('etcd upgrades one minor version at a time (3.5 → 3.6 → 3.7)');
      const after = await sandbox.converge(120_000);
      expect(after.members.map((m) => m.id).sort()).toEqual(members);
      expect(after.clusterIds).toEqual(before.clusterIds);
    } finally {
      await sandbox.close();
    }
  });
});
