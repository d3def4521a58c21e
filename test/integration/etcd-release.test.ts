import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { EtcdUnavailableError } from '../../core/errors.js';
import { waitForVotingMembers } from '../../testbed/agents.js';
import { createSimulatedGroup } from '../../testbed/aws-world.js';
import { NEWEST_ETCD, etcdBin, etcdRelease, etcdctlBin } from '../../testbed/tools.js';
import { waitFor } from '../../testbed/wait.js';
import { backupNow, loseEverything, names, openFleets, urls, writeKeys, type Fleets } from '../support/recovery.js';
import { groupWithCluster, openBed, uniqueName, type Bed } from '../support/testbed.js';

// What the selected etcd release (ETCD_AWS_ETCD_VERSION) does that the code depends on; CI runs this file on
// every supported release.
const run = promisify(execFile);
const release = etcdRelease();
let bed: Bed;
let fleets: Fleets;

beforeAll(async () => {
  bed = openBed('release');
  fleets = await openFleets(bed, 'release');
});
afterEach(async () => {
  await fleets.closeAll();
});
afterAll(async () => {
  await bed.dispose();
});

const fleet = (label: string, env: Record<string, string> = {}) => fleets.fleet(label, { env });

describe(`etcd ${release.version}`, () => {
  it('serves MemberList from a member without quorum only when asked for its local (serializable) view', async () => {
    // Prepare: three members, two of them stopped
    const { etcd } = await groupWithCluster(bed, 3);
    const [survivor, ...others] = etcd.nodes;
    for (const o of others) await etcd.kill(o.name);
    const client = new Etcd3Cluster([survivor!.clientUrl], { dialTimeoutMs: 1000, callTimeoutMs: 2000 });
    try {
      // Assess: no live cluster through our client; the survivor's own view still lists all three
      await expect(client.listMembers()).rejects.toThrow(EtcdUnavailableError);
      expect((await client.probe()).kind).toBe('no-quorum');
      expect((await client.localMembers(survivor!.clientUrl)).members).toHaveLength(3);
    } finally {
      client.close();
    }
    // ... and through etcd's own tool: `member list` is linearizable by default on every release (3.5's client
    // always asks so and has no --consistency flag); the local list needs --consistency=s, from etcdctl 3.6 on.
    const list = (tool: string, extra: string[]) =>
      run(tool, ['--endpoints', survivor!.clientUrl, '--command-timeout=2s', 'member', 'list', ...extra, '-w', 'json']).then((r) => r.stdout);
    await expect(list(etcdctlBin(), [])).rejects.toThrow(/deadline exceeded|unavailable/i);
    if (release.minor === '3.5') await expect(list(etcdctlBin(), ['--consistency=s'])).rejects.toThrow(/unknown flag: --consistency/);
    else expect(await list(etcdctlBin(), ['--consistency=s'])).toContain(survivor!.name);
    expect(await list(etcdctlBin(NEWEST_ETCD), ['--consistency=s'])).toContain(survivor!.name);
  });

  it('reports its cluster version over HTTP, which the backup records as the version of the data', async () => {
    const { etcd } = await groupWithCluster(bed, 1);
    const client = new Etcd3Cluster(etcd.clientUrls(), { dialTimeoutMs: 1000, callTimeoutMs: 2000 });
    try {
      const version = await waitFor('a decided cluster version', () => client.clusterVersion(etcd.clientUrls()[0]!), { timeoutMs: 20_000, intervalMs: 200 });
      expect(version).toBe(`${release.minor}.0`);
      expect((await client.status(etcd.clientUrls()[0]!)).version).toBe(release.version);
    } finally {
      client.close();
    }
  });

  it('restores with --bump-revision and --mark-compacted: revisions continue past the backup, older ones are compacted', async () => {
    // Prepare: a one-node cluster built by its agent, keys, a backup, then the instance and its disk are lost
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 1 });
    const builder = fleet('bump-source');
    await builder.start(group.instances[0]!);
    await waitForVotingMembers(urls(group.instances), names(group.instances));
    await writeKeys(urls(group.instances), 'k', 50);
    const { revision } = await backupNow(fleets.bucket, group.groupName);
    const [replacement] = await loseEverything(builder, group.groupName, group.instances);

    // Act: the replacement restores with a revision bump
    const BUMP = 1_000_000;
    const agents = fleet('bump', { ETCD_AWS_BUMP_REVISION: String(BUMP) });
    await agents.start(replacement!);
    await waitForVotingMembers(urls([replacement!]), names([replacement!]));

    // Assess: the revision went up by the bump, the keys are back, and reading at the backup's revision
    // says it was compacted (what tells a watcher to re-list instead of missing changes)
    const client = new Etcd3({ hosts: urls([replacement!]) });
    try {
      const now = await client.get('k/000000').exec();
      expect(BigInt(now.header.revision)).toBeGreaterThanOrEqual(BigInt(revision.after) + BigInt(BUMP));
      expect(now.kvs[0]?.value.toString()).toBe('v-k/000000');
      expect(await client.getAll().prefix('k/').count()).toBe(50);
      await waitFor(
        'a read at the backup revision to fail as compacted',
        async () => {
          try {
            await client.get('k/000000').revision(revision.after).exec();
            return false;
          } catch (error) {
            return /compacted/i.test((error as Error).message);
          }
        },
        { timeoutMs: 20_000, intervalMs: 200 },
      );
    } finally {
      client.close();
    }
  });

  it('the agent refuses to start when ETCD_AWS_BUMP_REVISION is set and etcdutl predates the flag (3.5.10)', async () => {
    // Prepare: this release's etcd beside an etcdutl that says it is 3.5.9
    const binDir = path.join(bed.workDir, uniqueName('old-etcdutl'));
    mkdirSync(binDir, { recursive: true });
    symlinkSync(etcdBin(), path.join(binDir, 'etcd'));
    writeFileSync(path.join(binDir, 'etcdutl'), '#!/bin/sh\necho "etcdutl version: 3.5.9"\necho "API version: 3.5"\n');
    chmodSync(path.join(binDir, 'etcdutl'), 0o755);
    const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 1 });
    const agents = fleet('old-etcdutl', { ETCD_AWS_BUMP_REVISION: '1000', ETCD_AWS_BIN_DIR: binDir });

    // Act
    const node = await agents.start(group.instances[0]!);
    const code = await node.process!.exited;

    // Assess: it stops before anything, and says what to do
    expect(code).toBe(1);
    expect(readFileSync(node.logFile, 'utf8')).toContain('ETCD_AWS_BUMP_REVISION needs etcdutl 3.5.10 or newer');
    expect(existsSync(node.dataDir)).toBe(false);
  });
});
