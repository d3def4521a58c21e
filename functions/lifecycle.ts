/**
 * Lifecycle hook → etcd member removal. Triggered by the SQS queue the termination hook notifies (batches,
 * ReportBatchItemFailures), its only trigger in the stack; a direct invocation with a hook message or an
 * EventBridge `EC2 Instance-terminate Lifecycle Action` event works too (by hand).
 * Records are processed one at a time: membership changes are serialized.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { AwsLifecycleActions } from '../core/aws/lifecycle-actions.js';
import { loadConfig } from '../core/config.js';
import { classifyLifecycleMessage, parseLifecycleBody, type LifecycleMessage } from '../core/domain/lifecycle-events.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { LambdaFinalBackup } from '../core/aws/final-backup.js';
import { etcdAccess } from './wiring.js';
import { removeTerminatingMember, type RemovalDeps } from '../core/use-cases/remove-terminating.js';

const config = loadConfig(process.env, 'function');
const logger = new Logger({ serviceName: 'etcd-aws-lifecycle' });
const metrics = new Metrics({ namespace: 'EtcdAws', serviceName: 'lifecycle', defaultDimensions: { AutoScalingGroup: config.asgName } });
const autoScaling = new AutoScalingClient({});
const inventory = new AwsInstanceInventory(autoScaling, new EC2Client({}));
const etcd = etcdAccess(config, logger);
const openCluster = (endpoints: readonly string[]) => new Etcd3Cluster(endpoints, etcd.options);
const finalBackup = config.backupFunction ? new LambdaFinalBackup(new LambdaClient({}), config.backupFunction) : undefined;
const deps: RemovalDeps = {
  groupName: config.asgName,
  inventory,
  openCluster,
  lifecycle: new AwsLifecycleActions(autoScaling),
  clientPort: config.clientPort,
  scheme: config.scheme,
  endpoints: config.endpoints,
  // Scale-in to zero: the last voting member is backed up (by the backup function) before its instance goes.
  finalBackup: finalBackup ? (notice) => finalBackup.start(notice) : undefined,
  log: logger,
  sleep: (ms) => sleep(ms),
  // The root certificate (TLS) after the hook's heartbeat: an issuer outage keeps the instance waiting.
  beforeEtcd: () => etcd.ready(),
};
const processor = new BatchProcessor(EventType.SQS);

/** Acknowledges what no retry can fix (with a log line and a metric); rethrows what a retry can. */
async function handleMessage(message: LifecycleMessage, lastDelivery: boolean): Promise<void> {
  if (message.kind !== 'termination') {
    logger.info('ignoring message', { ...message });
    metrics.addMetric('IgnoredMessages', MetricUnit.Count, 1);
    return;
  }
  const started = Date.now();
  try {
    const outcome = await removeTerminatingMember(message.notice, { ...deps, lastDelivery });
    if (outcome.kind === 'ignored') {
      logger.info('ignoring termination of another group', { instanceId: message.notice.instanceId, groupName: message.notice.groupName });
      metrics.addMetric('IgnoredMessages', MetricUnit.Count, 1);
      return;
    }
    if (outcome.kind === 'final-backup-started') {
      metrics.addMetric('FinalBackupsStarted', MetricUnit.Count, 1);
      return;
    }
    if (outcome.removal === 'removed') metrics.addMetric('MembersRemoved', MetricUnit.Count, 1);
    const sent = message.notice.time ? Date.parse(message.notice.time) : NaN;
    metrics.addMetric('RemovalLatency', MetricUnit.Milliseconds, Number.isNaN(sent) ? Date.now() - started : Date.now() - sent);
  } catch (error) {
    metrics.addMetric('RemovalFailures', MetricUnit.Count, 1);
    throw error;
  }
}

const recordHandler = async (record: SQSRecord): Promise<void> =>
  handleMessage(parseLifecycleBody(record.body), Number(record.attributes.ApproximateReceiveCount) >= config.lifecycleMaxReceives);

function isSqsEvent(event: unknown): event is SQSEvent {
  return typeof event === 'object' && event !== null && Array.isArray((event as { Records?: unknown }).Records);
}

export const handler = async (event: unknown, context: Context): Promise<SQSBatchResponse | undefined> => {
  logger.addContext(context);
  try {
    if (isSqsEvent(event)) {
      // A fully failed batch is reported like a partial one: SQS redelivers exactly the failed records.
      return await processPartialResponse(event, recordHandler, processor, {
        context,
        processInParallel: false,
        throwOnFullBatchFailure: false,
      });
    }
    // EventBridge invokes asynchronously: a thrown error is retried by Lambda, then goes to its DLQ.
    await handleMessage(classifyLifecycleMessage(event), false);
    return undefined;
  } finally {
    metrics.publishStoredMetrics();
  }
};
