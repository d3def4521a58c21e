import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { DiscoveryError, describeError } from '../errors.js';
import type { SigningCredentials } from './caller-identity.js';
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

  /**
   * The instance profile's current credentials, read from IMDSv2 directly: what proves to the certificate
   * issuer which instance this is (its session is named after the instance), whatever else the SDK's
   * default credential chain would pick up (environment variables, a profile).
   */
  async instanceProfileCredentials(): Promise<SigningCredentials> {
    try {
      const role = (await this.imds.request('/latest/meta-data/iam/security-credentials/', {})).split('\n')[0]?.trim();
      if (!role) throw new Error('no instance profile role is attached');
      const parsed = JSON.parse(await this.imds.request(`/latest/meta-data/iam/security-credentials/${role}`, {})) as Record<string, unknown>;
      if (parsed.Code !== 'Success' || typeof parsed.AccessKeyId !== 'string' || typeof parsed.SecretAccessKey !== 'string') {
        throw new Error(`IMDS answered ${String(parsed.Code)} for role ${role}`);
      }
      return { accessKeyId: parsed.AccessKeyId, secretAccessKey: parsed.SecretAccessKey, sessionToken: typeof parsed.Token === 'string' ? parsed.Token : undefined };
    } catch (error) {
      throw new DiscoveryError(
        `cannot read the instance profile's credentials from IMDSv2 (${describeError(error)}); the instance needs the stack's instance profile`,
        { cause: error, retryable: true },
      );
    }
  }
}
