/**
 * Scheduled (and manually invoked: `serverless invoke -f backup`, optionally with `{"force": true}`)
 * verified etcd snapshot, streamed from the leader into S3. Returns a JSON summary. Reserved concurrency 1.
 * Invoked by the lifecycle function with `{"finalBackupFor": <notice>}` when the last member terminates: the
 * final backup, then the lifecycle action is completed.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { AwsLifecycleActions } from '../core/aws/lifecycle-actions.js';
import { loadConfig } from '../core/config.js';
import { finalBackupRequest } from '../core/domain/lifecycle-events.js';
import { describeError } from '../core/errors.js';
import { takeBackup, takeFinalBackup, type BackupSummary } from '../core/use-cases/backup.js';
import { createBackupDeps } from './wiring.js';

/** The terminating hook times out after 900 s; a heartbeat every 5 minutes keeps the last instance waiting. */
const FINAL_BACKUP_HEARTBEAT_MS = 300_000;

const config = loadConfig(process.env, 'backup');
const logger = new Logger({ serviceName: 'etcd-aws-backup' });
const metrics = new Metrics({ namespace: 'EtcdAws', serviceName: 'backup', defaultDimensions: { AutoScalingGroup: config.asgName } });
const deps = createBackupDeps(config, config.backup, logger);

export const handler = async (event: unknown, context: Context): Promise<BackupSummary> => {
  logger.addContext(context);
  const force = typeof event === 'object' && event !== null && (event as { force?: unknown }).force === true;
  const finalFor = finalBackupRequest(event);
  try {
    const summary = finalFor
      ? await takeFinalBackup(finalFor, { ...deps, lifecycle: new AwsLifecycleActions(new AutoScalingClient({})), heartbeatMs: FINAL_BACKUP_HEARTBEAT_MS })
      : await takeBackup(deps, { force });
    // The age metric is emitted on every successful run; its absence is what the alarm treats as failure.
    metrics.addMetric('BackupAgeSeconds', MetricUnit.Seconds, summary.ageSeconds);
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
