/**
 * The cluster's certificate issuer, invoked by the node agents (lambda:Invoke, RequestResponse) with
 * `{kind, csr, identity}`: a CSR, and an STS GetCallerIdentity request the node signed with its instance
 * profile's credentials over the CSR's digest and this function's name. It answers `{status: 'issued', ...}`
 * with the certificate and the CAs to trust, or `{status: 'refused', code, reason}`. The only reader of the
 * CA secret (infra/pki.yml); it makes the CAs on its first call.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsManagerCaStore } from '../core/aws/ca-store.js';
import { describeCallerInstance } from '../core/aws/caller-instance.js';
import { stsEndpoint, verifyIdentityRequest } from '../core/aws/caller-identity.js';
import { loadConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { issueNodeCertificate, type IssueResult, type IssuerDeps } from '../core/use-cases/issue-certificate.js';

const config = loadConfig(process.env, 'issuer');
const logger = new Logger({ serviceName: 'etcd-aws-issuer' });
const metrics = new Metrics({ namespace: 'EtcdAws', serviceName: 'issuer', defaultDimensions: { AutoScalingGroup: config.asgName } });
const autoScaling = new AutoScalingClient({});
const ec2 = new EC2Client({});
const store = new SecretsManagerCaStore(new SecretsManagerClient({}), config.caSecret, config.asgName);
const sts = stsEndpoint(config.region);

/** A clock lagging by up to 5 minutes still accepts a new certificate. */
const BACKDATE_MS = 5 * 60_000;
/** A function's root certificate: a container lives hours at most, and asks again when it runs out. */
const CONTROL_LIFETIME_MS = 12 * 3600_000;

export const handler = async (event: unknown, context: Pick<Context, 'invokedFunctionArn'> & Partial<Context>): Promise<IssueResult> => {
  if (context.awsRequestId) logger.addContext(context as Context);
  const accountId = context.invokedFunctionArn.split(':')[4];
  if (!accountId || !/^\d{12}$/.test(accountId)) throw new ConfigError(`cannot tell this function's account from its ARN ${context.invokedFunctionArn}`);
  const deps: IssuerDeps = {
    authorities: () => store.authorities(),
    verifyCaller: (signed) => verifyIdentityRequest(signed, sts, config.region),
    describeInstance: (instanceId) => describeCallerInstance(autoScaling, ec2, instanceId),
    policy: {
      accountId,
      nodeRoleName: config.nodeRoleName,
      controlRoleNames: config.controlRoleNames,
      controlFunctionNames: config.controlFunctionNames,
      controlLifetimeMs: CONTROL_LIFETIME_MS,
      groupName: config.asgName,
      audience: config.functionName,
      serverDnsNames: config.serverDnsNames,
      lifetimeMs: config.certLifetimeMs,
      backdateMs: BACKDATE_MS,
    },
    now: () => Date.now(),
    log: logger,
  };
  const result = await issueNodeCertificate(event, deps);
  metrics.addMetric(result.status === 'issued' ? 'CertificatesIssued' : 'CertificatesRefused', MetricUnit.Count, 1);
  metrics.publishStoredMetrics();
  return result;
};
