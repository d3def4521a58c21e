import type { HealthVerdict } from '../core/domain/health.js';
import { ConfigError, describeError } from '../core/errors.js';
import { BootstrapRefusedError } from '../core/use-cases/bootstrap.js';
import { IncompatibleBackupError } from '../core/use-cases/restore.js';
import { DataDirUnusableError } from './data-dir.js';
import { EtcdMissingError } from './etcd-process.js';

/** What the agent tells Auto Scaling when it stops for good on this instance. */
export type FailureResponse =
  /** This instance cannot serve and a new one would: replace it (or abandon its launch). */
  | { readonly kind: 'unhealthy'; readonly verdict: Extract<HealthVerdict, { kind: 'unhealthy' }> }
  /** A new instance from the same launch template would fail the same way: stop a launch (and a rollout), replace nothing. */
  | { readonly kind: 'abandon-launch'; readonly reason: string }
  /** May clear by itself (an API, S3, the cluster): systemd starts the agent again. */
  | { readonly kind: 'retry' };

/**
 * Sorts the errors that end an agent run by who can fix them. Only what a new instance fixes (its disk, its
 * data dir, its installation) makes it unhealthy; a refusal caused by the launch template (a version the
 * cluster cannot take, a bad setting) stops a launch and the rollout it belongs to; anything else is retried.
 */
export function respondToFailure(error: unknown): FailureResponse {
  const detail = describeError(error);
  if (error instanceof DataDirUnusableError) return { kind: 'unhealthy', verdict: { kind: 'unhealthy', reason: 'data-dir-unusable', detail } };
  if (error instanceof EtcdMissingError) return { kind: 'unhealthy', verdict: { kind: 'unhealthy', reason: 'etcd-missing', detail } };
  if (error instanceof BootstrapRefusedError) {
    if (error.reason === 'unreadable-local-data') return { kind: 'unhealthy', verdict: { kind: 'unhealthy', reason: 'local-data-unreadable', detail } };
    if (error.reason === 'etcd-crash-loop') return { kind: 'unhealthy', verdict: { kind: 'unhealthy', reason: 'etcd-crash-loop', detail } };
    return { kind: 'abandon-launch', reason: detail };
  }
  if (error instanceof IncompatibleBackupError || error instanceof ConfigError) return { kind: 'abandon-launch', reason: detail };
  return { kind: 'retry' };
}
