import { describe, expect, it } from 'vitest';
import { CONTROL_PLANE_USERS, ensureAuthentication } from '../../core/use-cases/authentication.js';
import type { Member } from '../../core/domain/members.js';
import type { EtcdAuth } from '../../core/ports.js';
import { recordingLog } from '../support/fixtures.js';

function member(name: string, peerUrl: string): Member {
  return { id: String(name.length * 1000 + peerUrl.length), name, peerUrls: [peerUrl], clientUrls: [], isLearner: false };
}

/** etcd's auth store as far as the control plane uses it, refusing `auth enable` as etcd does without root. */
class FakeAuth implements EtcdAuth {
  enabled = false;
  readonly roles = new Set<string>();
  readonly users = new Map<string, Set<string>>();
  readonly calls: string[] = [];
  members: Member[] = [member('i-a', 'https://10.0.1.1:2380'), member('i-b', 'https://10.0.1.2:2380')];

  listMembers(): Promise<{ clusterId: string; members: Member[] }> {
    this.calls.push('members');
    return Promise.resolve({ clusterId: '1', members: this.members });
  }

  authEnabled(): Promise<boolean> {
    this.calls.push('status');
    return Promise.resolve(this.enabled);
  }

  ensureRole(name: string): Promise<void> {
    this.calls.push(`role ${name}`);
    this.roles.add(name);
    return Promise.resolve();
  }

  ensureUser(name: string, roles: readonly string[]): Promise<void> {
    this.calls.push(`user ${name} ${roles.join(',')}`);
    const held = this.users.get(name) ?? new Set<string>();
    for (const r of roles) held.add(r);
    this.users.set(name, held);
    return Promise.resolve();
  }

  enableAuth(): Promise<void> {
    this.calls.push('enable');
    if (!this.users.get('root')?.has('root')) return Promise.reject(new Error('etcdserver: root user does not exist'));
    this.enabled = true;
    return Promise.resolve();
  }
}

describe('ensureAuthentication', () => {
  it('adds root and the agent user with the root role before it turns authentication on', async () => {
    const etcd = new FakeAuth();
    const log = recordingLog();
    await expect(ensureAuthentication(etcd, log)).resolves.toBe('enabled');
    expect(etcd.enabled).toBe(true);
    const said = log.lines.find((l) => l.message === 'enabled etcd authentication');
    expect(said?.level).toBe('info');
    expect(String(said?.fields.reason)).toContain('authentication was off');
    expect(CONTROL_PLANE_USERS).toEqual(['root', 'etcd-aws-agent']);
    expect([...etcd.users].map(([u, r]) => [u, [...r]])).toEqual([
      ['root', ['root']],
      ['etcd-aws-agent', ['root']],
    ]);
    expect(etcd.calls.at(-1)).toBe('enable');
  });

  it('changes nothing when authentication is already on (another agent, or a restored backup, did it)', async () => {
    const etcd = new FakeAuth();
    etcd.enabled = true;
    await expect(ensureAuthentication(etcd, recordingLog())).resolves.toBe('already-enabled');
    expect(etcd.calls).toEqual(['status']);
  });

  it('finishes what a run that stopped half-way left (users there, authentication still off)', async () => {
    const etcd = new FakeAuth();
    await etcd.ensureUser('root', ['root']);
    await expect(ensureAuthentication(etcd, recordingLog())).resolves.toBe('enabled');
    expect(etcd.users.get('etcd-aws-agent')).toEqual(new Set(['root']));
  });

  it('waits, changing nothing, while a member launched before TLS is left (a stack migrating to TLS)', async () => {
    const etcd = new FakeAuth();
    etcd.members = [member('i-a', 'https://10.0.1.1:2380'), member('i-old', 'http://10.0.1.2:2380'), { ...member('', 'http://10.0.1.3:2380'), id: '77' }];
    await expect(ensureAuthentication(etcd, recordingLog())).resolves.toEqual({ waiting: ['i-old', '77'] });
    expect(etcd.calls).toEqual(['status', 'members']);
    expect(etcd.enabled).toBe(false);
  });
});
