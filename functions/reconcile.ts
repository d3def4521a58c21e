/**
 * Scheduled safety net for missed lifecycle events and crashed agents: removes at most one member whose
 * instance has been gone longer than the grace period (only while quorum stays safe), promotes caught-up
 * learners of active instances, marks unhealthy an instance whose agent never started or whose member is cut
 * off from the quorum for longer than a grace period (the group replaces it), and publishes members, voting, learners, healthy, orphans and database size as metrics.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { AwsInstanceLifecycle } from '../core/aws/instance-lifecycle.js';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { S3SeedCoordinator } from '../core/aws/seed-coordinator.js';
import { loadConfig } from '../core/config.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { etcdAccess } from './wiring.js';
import { reconcileCluster, type ReconcileDeps, type ReconcileResult } from '../core/use-cases/reconcile.js';

const config = loadConfig(process.env, 'function');
const logger = new Logger({ serviceName: 'etcd-aws-reconcile' });
const metrics = new Metrics({ namespace: 'EtcdAws', serviceName: 'reconcile' });
const autoScaling = new AutoScalingClient({});
const backup = config.backup;
const seeds = backup ? new S3SeedCoordinator(new S3Client({}), backup.bucket, backup.prefix, config.asgName) : undefined;
const etcd = etcdAccess(config, logger);
const instances = new AwsInstanceLifecycle(autoScaling, config.asgName, 'etcd-launch');
const deps: ReconcileDeps = {
  inventory: new AwsInstanceInventory(autoScaling, new EC2Client({})),
  openCluster: (endpoints) => new Etcd3Cluster(endpoints, etcd.options),
  clientPort: config.clientPort,
  scheme: config.scheme,
  log: logger,
  now: () => Date.now(),
  graceMs: config.orphanGraceMs,
  quotaBytes: config.quotaBytes,
  ...(seeds
    ? {
        registrations: () => seeds.registrations(),
        agentStartGraceMs: config.agentStartGraceMs,
        setUnhealthy: (instanceId: string) => instances.setUnhealthy(instanceId),
        cutOffGraceMs: config.cutOffGraceMs,
        registrationFreshMs: config.registrationFreshMs,
      }
    : {}),
};

/**
 * Time kept besides the defragmentations: a leadership move before one and the Status calls after it (each
 * call has a 5 s deadline and etcd3's own retries), and the metrics.
 */
const MAINTENANCE_MARGIN_MS = 30_000;

export const handler = async (_event?: unknown, context?: Partial<Pick<Context, 'getRemainingTimeInMillis'>>): Promise<ReconcileResult> => {
  // Invoked by hand outside Lambda (no context): the function's own timeout.
  const remainingMs = context?.getRemainingTimeInMillis?.() ?? 120_000;
  // A defragmentation may start while one more fits before the margin: at most half the time that is left.
  await etcd.ready();
  const defragTimeoutMs = Math.max(1000, Math.min(config.maintenance.defragTimeoutMs, (remainingMs - MAINTENANCE_MARGIN_MS) / 2));
  const report = await reconcileCluster(
    config.asgName,
    {
      ...deps,
      maintenance: {
        openCluster: (endpoints) => new Etcd3Cluster(endpoints, etcd.options),
        log: logger,
        policy: config.maintenance,
        quotaBytes: config.quotaBytes,
        defragTimeoutMs,
        deadline: Date.now() + remainingMs - MAINTENANCE_MARGIN_MS - defragTimeoutMs,
        now: () => Date.now(),
      },
    },
    config.endpoints,
  );
  metrics.addDimension('AutoScalingGroup', config.asgName);
  metrics.addMetric('ClusterReachable', MetricUnit.Count, report.reachable ? 1 : 0);
  metrics.addMetric('Members', MetricUnit.Count, report.members);
  metrics.addMetric('VotingMembers', MetricUnit.Count, report.votingMembers);
  metrics.addMetric('Learners', MetricUnit.Count, report.learners);
  metrics.addMetric('HealthyMembers', MetricUnit.Count, report.healthyMembers);
  metrics.addMetric('Orphans', MetricUnit.Count, report.orphans.length);
  metrics.addMetric('InstancesWithoutMember', MetricUnit.Count, report.instancesWithoutMember.length);
  metrics.addMetric('OrphansRemoved', MetricUnit.Count, report.removed?.result === 'removed' ? 1 : 0);
  metrics.addMetric('InstancesWithoutAgentMarked', MetricUnit.Count, report.markedUnhealthy ? 1 : 0);
  metrics.addMetric('CutOffMembersMarked', MetricUnit.Count, report.cutOff ? 1 : 0);
  metrics.addMetric('DbSizeBytes', MetricUnit.Bytes, report.dbSizeBytes);
  metrics.addMetric('DbQuotaPercent', MetricUnit.Percent, report.dbQuotaPercent);
  metrics.addMetric('DbSizeInUseBytes', MetricUnit.Bytes, report.dbSizeInUseBytes);
  const step = report.maintenance?.action;
  metrics.addMetric('Defragmentations', MetricUnit.Count, report.maintenance?.action === 'defragmented' && report.maintenance.result === 'done' ? 1 : 0);
  metrics.addMetric('NoSpaceRecovered', MetricUnit.Count, step === 'recovered-space' ? 1 : 0);
  // 1 while a NOSPACE alarm stays because the data in use fills the quota: only deleting data or a larger quota helps.
  metrics.addMetric('FullOfLiveData', MetricUnit.Count, step === 'full-of-live-data' ? 1 : 0);
  metrics.addMetric('MaintenanceFailures', MetricUnit.Count, report.maintenance?.action === 'skipped' && report.maintenance.reason === 'failed' ? 1 : 0);
  for (const member of report.memberSpace) {
    const single = metrics.singleMetric();
    single.addDimension('AutoScalingGroup', config.asgName);
    single.addDimension('Member', member.name);
    single.addMetric('MemberDbSizeBytes', MetricUnit.Bytes, member.dbSizeBytes);
    single.addMetric('MemberDbSizeInUseBytes', MetricUnit.Bytes, member.dbSizeInUseBytes);
    single.addMetric('MemberDbQuotaPercent', MetricUnit.Percent, member.dbQuotaPercent);
  }
  metrics.publishStoredMetrics();
  logger.info('reconciled cluster', { ...report });
  return report;
};
