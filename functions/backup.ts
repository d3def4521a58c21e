/**
 * Scheduled (and manually invoked: `serverless invoke -f backup`, optionally with `{"force": true}`)
 * verified etcd snapshot, streamed from the leader into S3. Returns a JSON summary. Single-flight without reserved
 * concurrency: an S3 lock (`<prefix><group>/snapshots/locks/backup.json`) lets one invocation back up at a time;
 * another scheduled or manual one returns `{status: 'skipped', reason: 'backup-in-progress'}`.
 * Invoked by the lifecycle function with `{"finalBackupFor": <notice>}` when the last member terminates: the
 * final backup, then the lifecycle action is completed.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { AwsLifecycleActions } from '../core/aws/lifecycle-actions.js';
import { loadConfig } from '../core/config.js';
import { finalBackupRequest } from '../core/domain/lifecycle-events.js';
import { describeError } from '../core/errors.js';
import { takeBackup, takeFinalBackup, type BackupSummary } from '../core/use-cases/backup.js';
import { createBackupDeps, etcdAccess } from './wiring.js';

/** The terminating hook times out after 900 s; a heartbeat every 5 minutes keeps the last instance waiting. */
const FINAL_BACKUP_HEARTBEAT_MS = 300_000;
/**
 * Of the function's remaining time, what the final backup keeps for itself after waiting for the backup lock:
 * a snapshot of etcd's default 2 GiB quota streams from the leader to S3 in a minute or two. The rest (about
 * 10 minutes of the 15) may be spent waiting for a scheduled backup in progress, which rarely takes more than
 * seconds. With less time left than twice that (a test bed's short deadline), half of it is kept. Should the
 * previous backup have taken longer than what is left once it holds the lock, the final backup does not start
 * (decideBackupTime): it releases the lock and fails, and Lambda's retry has the full 15 minutes.
 */
const FINAL_BACKUP_RESERVE_MS = 300_000;
const LOCK_POLL_MS = 2000;

function finalBackupLockWaitMs(remainingMs: number): number {
  return Math.max(0, remainingMs - Math.min(FINAL_BACKUP_RESERVE_MS, remainingMs / 2));
}

const config = loadConfig(process.env, 'backup');
const logger = new Logger({ serviceName: 'etcd-aws-backup' });
const metrics = new Metrics({ namespace: 'EtcdAws', serviceName: 'backup', defaultDimensions: { AutoScalingGroup: config.asgName } });
const etcd = etcdAccess(config, logger);
const deps = createBackupDeps(config, config.backup, logger, etcd.options);

export const handler = async (event: unknown, context: Context): Promise<BackupSummary> => {
  logger.addContext(context);
  const force = typeof event === 'object' && event !== null && (event as { force?: unknown }).force === true;
  const finalFor = finalBackupRequest(event);
  // The request ID names the holder in logs; the suffix tells a retried event's attempts apart (they share it).
  const holder = `${context.awsRequestId}/${randomUUID().slice(0, 8)}`;
  // When Lambda stops this invocation: the backup lock expires a minute after it (backupLockExpiry).
  const deadline = Date.now() + context.getRemainingTimeInMillis();
  try {
    const summary = finalFor
      ? await takeFinalBackup(
          finalFor,
          // The certificate after the first heartbeat: an issuer outage keeps the last instance waiting.
          { ...deps, lifecycle: new AwsLifecycleActions(new AutoScalingClient({})), heartbeatMs: FINAL_BACKUP_HEARTBEAT_MS, beforeEtcd: () => etcd.ready() },
          { holder, deadline, lockWait: { waitMs: finalBackupLockWaitMs(context.getRemainingTimeInMillis()), pollMs: LOCK_POLL_MS, sleep } },
        )
      : await etcd.ready().then(() => takeBackup(deps, { force, holder, deadline }));
    // The age metric is emitted on every run that knows the data is backed up; its absence is what the alarm
    // treats as failure. A run skipped because another holds the lock knows nothing of the kind: the run in
    // progress emits it (or, should it fail, nobody does and the alarm fires).
    if (summary.status === 'skipped' && summary.reason === 'backup-in-progress') metrics.addMetric('BackupSkippedInProgress', MetricUnit.Count, 1);
    else metrics.addMetric('BackupAgeSeconds', MetricUnit.Seconds, summary.ageSeconds);
    if (summary.status === 'uploaded') {
      metrics.addMetric('BackupBytes', MetricUnit.Bytes, summary.size);
      metrics.addMetric('BackupDuration', MetricUnit.Milliseconds, summary.durationMs);
      metrics.addMetric('BackupRevision', MetricUnit.Count, Number(summary.revision.after));
    }
    logger.info('backup finished', { ...summary });
    return summary;
  } catch (error) {
    metrics.addMetric('BackupFailures', MetricUnit.Count, 1);
    logger.error('backup failed', { error: describeError(error) });
    throw error;
  } finally {
    metrics.publishStoredMetrics();
  }
};
