import { describe, expect, it, vi } from 'vitest';
import type { GroupInstance } from '../../core/domain/instances.js';
import type { TerminationNotice } from '../../core/domain/lifecycle-events.js';
import type { Member } from '../../core/domain/members.js';
import { silentLog } from '../../core/logger.js';
import type { EtcdCluster, EtcdMembership, LifecycleActions } from '../../core/ports.js';
import { removeTerminatingMember, type RemovalDeps } from '../../core/use-cases/remove-terminating.js';

const notice: TerminationNotice = { groupName: 'g', hookName: 'h', instanceId: 'i-last', token: 't', time: undefined };
const last: Member = { id: '1', name: 'i-last', peerUrls: ['http://10.0.0.1:2380'], clientUrls: ['http://10.0.0.1:2379'], isLearner: false };
const instance: GroupInstance = { instanceId: 'i-last', lifecycleState: 'Terminating:Wait', healthStatus: 'Healthy', availabilityZone: 'a', privateIp: '10.0.0.1' };

function deps(order: string[], finalBackup: RemovalDeps['finalBackup']): RemovalDeps {
  const etcd = {
    listMembers: () => Promise.resolve({ clusterId: 'c', members: [last] }),
    remove: vi.fn(),
    close: () => undefined,
  } as unknown as EtcdCluster & EtcdMembership;
  const lifecycle: LifecycleActions = {
    complete: () => {
      order.push('complete');
      return Promise.resolve('completed');
    },
    heartbeat: () => Promise.resolve(),
  };
  return {
    groupName: 'g',
    inventory: { instancesOf: () => Promise.resolve([instance]), groupOf: () => Promise.resolve('g'), instanceFacts: () => Promise.resolve(new Map()) },
    openCluster: (endpoints) => {
      order.push(`open ${endpoints.join(',')}`);
      return etcd;
    },
    lifecycle,
    clientPort: 2379,
    endpoints: undefined,
    finalBackup,
    log: silentLog,
  };
}

describe('removeTerminatingMember on scale-in to zero', () => {
  it('backs up the last voting member through itself, keeps it, then lets the termination proceed', async () => {
    const order: string[] = [];
    const outcome = await removeTerminatingMember(
      notice,
      deps(order, () => {
        order.push('backup');
        return Promise.resolve();
      }),
    );
    expect(order).toEqual(['open http://10.0.0.1:2379', 'backup', 'complete']);
    expect(outcome).toMatchObject({ kind: 'completed', removal: 'none', plan: { kind: 'keep-last-voter' } });
  });

  it('does not complete the action when the final backup fails: the message is retried', async () => {
    const order: string[] = [];
    await expect(removeTerminatingMember(notice, deps(order, () => Promise.reject(new Error('S3 is down'))))).rejects.toThrow('S3 is down');
    expect(order).not.toContain('complete');
  });
});
