import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdRelease, etcdctlBin } from '../../testbed/tools.js';
import { runObserved, scenarioBed, type ScenarioBed } from '../support/scenario.js';

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
      const { stdout } = await run(etcdctlBin('3.7'), ['--endpoints', urls.join(','), 'endpoint', 'status', '-w', 'json']);
      const versions = [...stdout.matchAll(/"version":"([^"]+)"/g)].map((m) => m[1]);
      expect(versions).toEqual(urls.map(() => newest));
      const cluster = (await (await fetch(`${urls[0]!}/version`)).json()) as { etcdcluster: string };
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
});
