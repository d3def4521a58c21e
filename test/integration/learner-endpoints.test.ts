import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { EtcdTestCluster } from '../../testbed/etcd.js';
import { openBed, type Bed } from '../support/testbed.js';

// A learner refuses every linearizable request ("rpc not supported for learner"). The control plane gives
// its clients every member's endpoint, learners included (a rollout or a scale-out has one for a while):
// a request that lands on a learner must go to another member, not fail the backup, the hook or reconcile.
let bed: Bed;
let etcd: EtcdTestCluster;
let learnerUrl: string;
let voterUrl: string;
const timeouts = { dialTimeoutMs: 1000, callTimeoutMs: 3000 };

beforeAll(async () => {
  bed = openBed('learner-endpoints');
  etcd = await EtcdTestCluster.start({ nodes: [{ name: 'voter', ip: bed.network.hostAddress(1) }], workDir: path.join(bed.workDir, 'etcd'), processes: bed.processes });
  const learner = await etcd.addLearner({ name: 'learner', ip: bed.network.hostAddress(2) });
  learnerUrl = learner.clientUrl;
  voterUrl = etcd.node('voter').clientUrl;
});

afterAll(async () => {
  await bed.dispose();
});

describe('requests through a pool that includes a learner', () => {
  it('list the members, see the quorum, and change membership through the voter, whichever member the client picks first', async () => {
    for (const endpoints of [[learnerUrl, voterUrl], [voterUrl, learnerUrl]]) {
      for (let i = 0; i < 4; i += 1) {
        const cluster = new Etcd3Cluster(endpoints, timeouts);
        try {
          const { members } = await cluster.listMembers();
          expect(members.map((m) => [m.name, m.isLearner]).sort()).toEqual([['learner', true], ['voter', false]]);
          expect(await cluster.hasQuorum()).toBe(true);
          expect(await cluster.remove('1')).toBe('not-found');
        } finally {
          cluster.close();
        }
      }
    }
  });

  it('moves on from a member whose etcd does not run (an instance just launched, or stopping)', async () => {
    const silent = `http://${bed.network.hostAddress(3)}:2379`;
    const cluster = new Etcd3Cluster([silent, learnerUrl, voterUrl], timeouts);
    try {
      expect((await cluster.listMembers()).members).toHaveLength(2);
      expect(await cluster.remove('1')).toBe('not-found');
    } finally {
      cluster.close();
    }
  });

  it('a pool of learners alone has no quorum to offer', async () => {
    const cluster = new Etcd3Cluster([learnerUrl], timeouts);
    try {
      expect(await cluster.hasQuorum()).toBe(false);
      // The learner's refusal, or (3.5) etcd3's circuit breaker opened by the refusals just before: no quorum either way.
      await expect(cluster.listMembers()).rejects.toThrow(/no etcd member with quorum answered/);
    } finally {
      cluster.close();
    }
  });
});
