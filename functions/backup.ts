/**
 * Scheduled (and manually invoked: `serverless invoke -f backup`, optionally with `{"force": true}`)
 * verified etcd snapshot, streamed from the leader into S3. Returns a JSON summary. Reserved concurrency 1.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { loadConfig } from '../core/config.js';
import { describeError } from '../core/errors.js';
import { takeBackup, type BackupSummary } from '../core/use-cases/backup.js';
import { createBackupDeps } from './wiring.js';

const config = loadConfig(process.env, 'backup');
const logger = new Logger({ serviceName: 'etcd-aws-backup' });
const metrics = new Metrics({ namespace: 'EtcdAws', serviceName: 'backup', defaultDimensions: { AutoScalingGroup: config.asgName } });
const deps = createBackupDeps(config, config.backup, logger);

export const handler = async (event: unknown, context: Context): Promise<BackupSummary> => {
  logger.addContext(context);
  const force = typeof event === 'object' && event !== null && (event as { force?: unknown }).force === true;
  try {
    const summary = await takeBackup(deps, { force });
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
