import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import type { InstanceIdentity } from '../core/ports.js';

/** The test bed's instance profile role: what the issuer's ETCD_AWS_NODE_ROLE names in the test bed. */
export const TESTBED_NODE_ROLE = 'etcd-aws-testbed-NodeRole';

export interface ImdsServer {
  /** Value for AWS_EC2_METADATA_SERVICE_ENDPOINT. */
  readonly endpoint: string;
  /** Requests served so far, e.g. `PUT /latest/api/token`. */
  readonly requests: readonly string[];
  close(): Promise<void>;
}

/**
 * Credentials of the instance profile as EC2 serves them: a session of the role named after the instance,
 * here from the emulator's STS (AssumeRole with the instance ID as session name), so its GetCallerIdentity
 * answers `assumed-role/<role>/<instance ID>` as AWS does.
 */
async function instanceProfileCredentials(roleName: string, instanceId: string): Promise<string> {
  const out = await new STSClient({}).send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::123456789012:role/${roleName}`, RoleSessionName: instanceId }));
  const c = out.Credentials;
  return JSON.stringify({
    Code: 'Success',
    LastUpdated: new Date().toISOString(),
    Type: 'AWS-HMAC',
    AccessKeyId: c?.AccessKeyId,
    SecretAccessKey: c?.SecretAccessKey,
    Token: c?.SessionToken,
    Expiration: c?.Expiration?.toISOString(),
  });
}

/**
 * A small IMDSv2 for one simulated instance: a session token from `PUT /latest/api/token`, then metadata
 * GETs that must carry it (401 otherwise, as on EC2 with http-tokens=required). Its instance profile's
 * credentials (`iam/security-credentials/<role>`) come from the emulator's STS, made on each read.
 */
export async function startImds(identity: InstanceIdentity, host = '127.0.0.1', roleName = TESTBED_NODE_ROLE): Promise<ImdsServer> {
  const tokens = new Set<string>();
  const requests: string[] = [];
  const documents: Record<string, string> = {
    '/latest/meta-data/instance-id': identity.instanceId,
    '/latest/meta-data/local-ipv4': identity.privateIp,
    '/latest/meta-data/placement/region': identity.region,
    '/latest/meta-data/placement/availability-zone': identity.availabilityZone,
    '/latest/meta-data/iam/security-credentials/': roleName,
    '/latest/dynamic/instance-identity/document': JSON.stringify({
      instanceId: identity.instanceId,
      privateIp: identity.privateIp,
      region: identity.region,
      availabilityZone: identity.availabilityZone,
      accountId: '123456789012',
      instanceType: 't3.small',
      imageId: 'ami-12c6146b',
      architecture: 'x86_64',
    }),
  };
  const server: Server = createServer((req, res) => {
    // The SDK joins the endpoint's path "/" and "/latest/..." into "//latest/..."; EC2's IMDS accepts it.
    const url = (req.url ?? '').replace(/\/{2,}/g, '/');
    requests.push(`${req.method} ${url}`);
    if (req.method === 'PUT' && url === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) {
        res.writeHead(400).end();
        return;
      }
      const token = randomUUID();
      tokens.add(token);
      res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    const token = req.headers['x-aws-ec2-metadata-token'];
    if (typeof token !== 'string' || !tokens.has(token)) {
      res.writeHead(401).end();
      return;
    }
    if (url === `/latest/meta-data/iam/security-credentials/${roleName}`) {
      instanceProfileCredentials(roleName, identity.instanceId).then(
        (body) => res.writeHead(200, { 'content-type': 'text/plain' }).end(body),
        () => res.writeHead(500).end(),
      );
      return;
    }
    const body = documents[url];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://${host}:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
