import type { BackupLockState } from '../../core/domain/backups.js';
import type { GroupInstance } from '../../core/domain/instances.js';
import type { Member } from '../../core/domain/members.js';
import type { Log } from '../../core/logger.js';
import type { BackupLock } from '../../core/ports.js';

/** A member as etcd lists it; an unstarted one (no name yet) has no client URLs. */
export const member = (id: string, name: string, ip: string, isLearner = false): Member => ({
  id,
  name,
  peerUrls: [`http://${ip}:2380`],
  clientUrls: name ? [`http://${ip}:2379`] : [],
  isLearner,
});

/** An instance of the group as Auto Scaling and EC2 describe it. */
export const groupInstance = (instanceId: string, privateIp: string | undefined, lifecycleState = 'InService'): GroupInstance => ({
  instanceId,
  privateIp,
  lifecycleState,
  healthStatus: 'Healthy',
  availabilityZone: 'us-east-1a',
});

/**
 * The backup lock in memory, with S3's compare-and-swap: a write names the version it read (undefined: none)
 * and loses when that is no longer current. `stored` is what S3 would hold.
 */
export function memoryLock(key = 'g/snapshots/locks/backup.json'): BackupLock & { stored: BackupLockState | undefined; version: number } {
  const lock = {
    key,
    stored: undefined as BackupLockState | undefined,
    version: 0,
    read: () => Promise.resolve(lock.stored),
    write: (holder: string, expiresAt: number, expected: string | undefined) => {
      if (lock.stored?.etag !== expected) return Promise.resolve(undefined);
      lock.version += 1;
      lock.stored = { holder, expiresAt, etag: `"v${lock.version}"` };
      return Promise.resolve(lock.stored);
    },
    release: (held: BackupLockState) => {
      if (lock.stored?.etag !== held.etag) return Promise.resolve('not-held' as const);
      lock.stored = undefined;
      return Promise.resolve('released' as const);
    },
  };
  return lock;
}

/** A log that keeps every line, to check what was decided and why. */
export function recordingLog(): Log & { lines: Array<{ level: string; message: string; fields: Record<string, unknown> }> } {
  const lines: Array<{ level: string; message: string; fields: Record<string, unknown> }> = [];
  const at = (level: string) => (message: string, ...fields: Array<Record<string, unknown>>) => void lines.push({ level, message, fields: Object.assign({}, ...fields) as Record<string, unknown> });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
