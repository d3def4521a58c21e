import { describe, expect, it } from 'vitest';
import type { AgentRegistration, ServingState } from '../../core/domain/election.js';
import { nextServingState, publishServingState } from '../../core/use-cases/serving-heartbeat.js';

const quorum = { kind: 'quorum' as const, status: { clusterId: 'c1', memberId: 'm1' } };
const noQuorum = { kind: 'no-quorum' as const, status: { clusterId: 'c1', memberId: 'm1' } };
const silent = { kind: 'silent' as const };
const serving = (q: boolean, since: number): ServingState => ({ clusterId: 'c1', memberId: 'm1', quorum: q, since });

describe('nextServingState', () => {
  it.each<[string, ServingState | undefined, Parameters<typeof nextServingState>[1], ServingState | undefined]>([
    ['first look, quorum: since now', undefined, quorum, serving(true, 100)],
    ['first look, no quorum: since now', undefined, noQuorum, serving(false, 100)],
    ['first look, silent etcd: nothing to say', undefined, silent, undefined],
    ['quorum kept: since carries over', serving(true, 10), quorum, serving(true, 10)],
    ['quorum lost: since restarts', serving(true, 10), noQuorum, serving(false, 100)],
    ['no quorum kept: since carries over (what reconcile measures the cut-off grace from)', serving(false, 10), noQuorum, serving(false, 10)],
    ['etcd went silent: no quorum, in the cluster it last served', serving(true, 10), silent, serving(false, 100)],
    ['silent after no quorum: since carries over', serving(false, 10), silent, serving(false, 10)],
    ['another cluster (restored or forced): since restarts', serving(true, 10), { kind: 'quorum', status: { clusterId: 'c2', memberId: 'm1' } }, { clusterId: 'c2', memberId: 'm1', quorum: true, since: 100 }],
    ['another member ID (rejoined): since restarts', serving(true, 10), { kind: 'quorum', status: { clusterId: 'c1', memberId: 'm2' } }, { clusterId: 'c1', memberId: 'm2', quorum: true, since: 100 }],
  ])('%s', (_name, last, local, expected) => {
    expect(nextServingState(last, local, 100)).toEqual(expected);
  });
});

describe('publishServingState', () => {
  it('registers what its etcd serves on every beat, keeps going through failed writes, and ends when etcd has stopped', async () => {
    const written: AgentRegistration[] = [];
    const looks = [true, true, false];
    let beat = 0;
    let now = 1000;
    const warnings: string[] = [];
    await publishServingState({
      selfInstanceId: 'i-1',
      selfUrl: 'http://10.0.0.1:2379',
      openCluster: () => {
        const hasQuorum = looks[Math.min(beat, looks.length - 1)];
        return {
          status: () => Promise.resolve({ endpoint: 'x', memberId: 'm1', clusterId: 'c1', leaderId: hasQuorum ? 'm1' : '0', revision: '1', raftIndex: '1', raftTerm: '1', version: '3.6.16', dbSize: 1, dbSizeInUse: 1, isLearner: false }),
          hasQuorum: () => Promise.resolve(hasQuorum),
          close: () => undefined,
        } as never;
      },
      seeds: {
        register: (r) => {
          if (beat === 1) return Promise.reject(new Error('throttled'));
          written.push(r);
          return Promise.resolve();
        },
      },
      now: () => now,
      sleep: () => {
        beat += 1;
        now += 500;
        return Promise.resolve();
      },
      intervalMs: 500,
      stopped: () => beat >= 3,
      log: { debug: () => {}, info: () => {}, warn: (m: string) => warnings.push(m), error: () => {} },
    });
    expect(written.map((r) => r.serving)).toEqual([serving(true, 1000), serving(false, 2000)]);
    expect(written.every((r) => r.instanceId === 'i-1' && r.hasData)).toBe(true);
    expect(warnings).toHaveLength(1);
  });
});
