/**
 * Scheduled safety net. Today it observes: it compares the etcd members with the group's instances and
 * publishes the numbers as metrics (members, voting, learners, healthy, orphans) so alarms see a sick
 * cluster. Removing orphans and promoting stranded learners land with the lifecycle issue.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { loadConfig } from '../core/config.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { observeCluster, type HealthReport } from '../core/use-cases/observe.js';

const config = loadConfig(process.env, 'function');
const logger = new Logger({ serviceName: 'etcd-aws-reconcile' });
const metrics = new Metrics({ namespace: 'EtcdAws', serviceName: 'reconcile' });
const deps = {
  inventory: new AwsInstanceInventory(new AutoScalingClient({}), new EC2Client({})),
  openCluster: (endpoints: readonly string[]) => new Etcd3Cluster(endpoints, config),
  clientPort: config.clientPort,
  log: logger,
};

export const handler = async (): Promise<HealthReport> => {
  const report = await observeCluster(config.asgName, deps, config.endpoints);
  metrics.addDimension('AutoScalingGroup', config.asgName);
  metrics.addMetric('ClusterReachable', MetricUnit.Count, report.reachable ? 1 : 0);
  metrics.addMetric('Members', MetricUnit.Count, report.members);
  metrics.addMetric('VotingMembers', MetricUnit.Count, report.votingMembers);
  metrics.addMetric('Learners', MetricUnit.Count, report.learners);
  metrics.addMetric('HealthyMembers', MetricUnit.Count, report.healthyMembers);
  metrics.addMetric('Orphans', MetricUnit.Count, report.orphans.length);
  metrics.addMetric('InstancesWithoutMember', MetricUnit.Count, report.instancesWithoutMember.length);
  metrics.publishStoredMetrics();
  logger.info('observed cluster', { ...report });
  return report;
};
