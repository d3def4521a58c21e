import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { DiscoveryError, describeError } from '../errors.js';
import type { IdentitySource, InstanceIdentity } from '../ports.js';

export interface ImdsOptions {
  /** Per-request timeout. */
  readonly timeoutMs: number;
  /** Retries after the first attempt, with the SDK's backoff. */
  readonly retries: number;
}

/**
 * The instance's identity through IMDSv2 only (a session token first, then metadata reads). The endpoint
 * is the SDK's: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, default http://169.254.169.254.
 */
export class ImdsIdentitySource implements IdentitySource {
  private readonly imds: MetadataService;

  constructor(options: ImdsOptions = { timeoutMs: 1000, retries: 3 }) {
    this.imds = new MetadataService({
      httpOptions: { timeout: options.timeoutMs },
      retries: options.retries,
      ec2MetadataV1Disabled: true,
    });
  }

  async identity(): Promise<InstanceIdentity> {
    let document: string;
    try {
      document = await this.imds.request('/latest/dynamic/instance-identity/document', {});
    } catch (error) {
      throw new DiscoveryError(
        `cannot read the instance identity from IMDSv2 (${describeError(error)}); ` +
          'run the agent on an EC2 instance with the metadata service enabled, ' +
          'or point AWS_EC2_METADATA_SERVICE_ENDPOINT at a reachable one',
        { cause: error, retryable: true },
      );
    }
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(document) as Record<string, unknown>;
    } catch (error) {
      throw new DiscoveryError('the instance identity document from IMDS is not JSON', { cause: error });
    }
    const field = (key: string): string => {
      const value = parsed[key];
      if (typeof value !== 'string' || value === '') {
        throw new DiscoveryError(`the instance identity document from IMDS has no ${key}`);
      }
      return value;
    };
    return {
      instanceId: field('instanceId'),
      region: field('region'),
      privateIp: field('privateIp'),
      availabilityZone: field('availabilityZone'),
    };
  }
}
