import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.js';
import type { AgentRegistration, SeedLease } from '../../core/domain/election.js';
import { silentLog } from '../../core/logger.js';
import type { EtcdMembership, SeedCoordinator } from '../../core/ports.js';
import { bootstrap, type BootstrapDeps } from '../../core/use-cases/bootstrap.js';
import type { SeedData } from '../../core/use-cases/restore.js';
import { groupInstance } from '../support/fixtures.js';

const self = { instanceId: 'i-self', privateIp: '10.0.0.1' };
const instances = [groupInstance('i-self', '10.0.0.1', 'Pending:Wait'), groupInstance('i-b', '10.0.0.2', 'Pending:Wait')];

/**
 * A seed election against fakes: nothing answers, the peer registered fresh "no data", and the lease store is
 * scripted: `onRead` may change the stored lease as another agent would.
 */
function election(script: { takenAfterWin?: boolean; renewals?: 'fail' }) {
  const events: string[] = [];
  let now = 1_000_000;
  let stored: SeedLease | undefined;
  let version = 0;
  let won = false;
  const seeds: SeedCoordinator = {
    register: (r: AgentRegistration) => {
      events.push(`register ${String(r.hasData)}`);
      return Promise.resolve();
    },
    registrations: () => Promise.resolve([{ instanceId: 'i-b', hasData: false, at: now }]),
    readLease: () => {
      // Another agent holds the lease from then on, and keeps renewing it.
      if (won && script.takenAfterWin) stored = { holder: 'i-b', expiresAt: now + 60_000, etag: 'other' };
      return Promise.resolve(stored);
    },
    writeLease: (holder, expiresAt, expected) => {
      if (won && script.renewals === 'fail') return Promise.resolve(undefined);
      if (expected !== stored?.etag) return Promise.resolve(undefined);
      version += 1;
      stored = { holder, expiresAt, etag: `v${version}` };
      won = true;
      return Promise.resolve(stored);
    },
  };
  const silent = { probe: () => Promise.resolve({ kind: 'silent' as const }), close: () => undefined } as unknown as EtcdMembership & { close(): void };
  const deps: BootstrapDeps = {
    inventory: { instancesOf: () => Promise.resolve(instances), groupOf: () => Promise.resolve('g'), instanceFacts: () => Promise.resolve(new Map()) },
    openMembership: () => silent,
    seeds,
    // Once the restore ran, the data dir holds its data.
    localData: () => Promise.resolve(events.includes('seed') ? { kind: 'member', memberId: '1', clusterId: 'c' } : { kind: 'none' }),
    setAsideLocalData: () => {
      events.push('set aside');
      return Promise.resolve('/data.stale');
    },
    now: () => now,
    sleep: (ms) => {
      now += ms;
      return Promise.resolve();
    },
    log: silentLog,
    clientPort: 2379,
    peerPort: 2380,
    timing: { leaseMs: 30_000, pollMs: 2000, freshMs: 30_000 },
    etcdVersion: { major: 3, minor: 6, patch: 16 },
    seedData: async (): Promise<SeedData> => {
      events.push('seed');
      // A restore that outlasts the lease several times over.
      for (let i = 0; i < 10; i += 1) await deps.sleep(10_000);
      return { kind: 'empty', reason: 'no-backup-ever', attempts: [] };
    },
  };
  return { deps, events };
}

describe('the seed election', () => {
  it('founds after winning the lease when nothing changed', async () => {
    const { deps, events } = election({});
    const outcome = await bootstrap(self, 'g', deps);
    expect(outcome.plan.kind).toBe('seed');
    expect(events).toContain('seed');
  });

  it('does not found when the lease it won was taken over before it founded (it expired meanwhile)', async () => {
    const { deps, events } = election({ takenAfterWin: true });
    // Bounded: after a few hundred polls (minutes of its clock) it still waits for the other holder.
    let polls = 0;
    const bounded: BootstrapDeps = {
      ...deps,
      sleep: (ms: number) => {
        polls += 1;
        return polls > 300 ? Promise.reject(new Error('still waiting')) : deps.sleep(ms);
      },
    };
    await expect(bootstrap(self, 'g', bounded)).rejects.toThrow('still waiting');
    expect(events).not.toContain('seed');
  });

  it('gives up a restore whose lease it could not keep: the data is set aside, nothing starts', async () => {
    const { deps, events } = election({ renewals: 'fail' });
    await expect(bootstrap(self, 'g', deps)).rejects.toThrow(/lost the seed lease/);
    expect(events).toContain('seed');
    expect(events.at(-1)).toBe('set aside');
  });
});

describe('seed election timing', () => {
  it('refuses a registration freshness longer than the lease: a stale "no data" could then outlive a founder', () => {
    const base = { BACKUP_BUCKET: 'b' };
    expect(() => loadConfig({ ...base, ETCD_AWS_SEED_LEASE_MS: '10000', ETCD_AWS_REGISTRATION_FRESH_MS: '20000' }, 'agent')).toThrow(
      /ETCD_AWS_REGISTRATION_FRESH_MS="20000" is invalid .*: must not be longer than ETCD_AWS_SEED_LEASE_MS \(10000\)/,
    );
    expect(loadConfig({ ...base, ETCD_AWS_SEED_LEASE_MS: '10000', ETCD_AWS_REGISTRATION_FRESH_MS: '10000' }, 'agent').timing).toMatchObject({ leaseMs: 10_000, freshMs: 10_000 });
  });
});
