import { mkdirSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { stsEndpoint, type SigningCredentials } from '../core/aws/caller-identity.js';
import { requestCertificate } from '../core/aws/issuer-client.js';
import type { EtcdTlsCredentials } from '../core/etcd/cluster.js';
import { handlerEnv } from './lambda.js';
import { TESTBED_NODE_ROLE } from './imds.js';

/** The role of the test bed's control-plane functions (the stack has one per function; one role is enough here). */
export const TESTBED_CONTROL_ROLE = 'etcd-aws-testbed-ControlRole';

/**
 * Credentials of a session of `roleName` named `session`, from the emulator's STS: what Lambda gives a
 * function (its role, a session named after it) and EC2 an instance (its profile's role, the instance ID).
 */
export async function sessionCredentials(roleName: string, session: string): Promise<SigningCredentials> {
  const out = await new STSClient({}).send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::123456789012:role/${roleName}`, RoleSessionName: session }));
  const c = out.Credentials;
  if (!c?.AccessKeyId || !c.SecretAccessKey) throw new Error('the emulator returned no credentials');
  return { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken };
}

/** A client certificate on disk and in memory, with the CA that signed the servers' certificates. */
export interface ClientTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caPem: Buffer;
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
}

/**
 * The stack's PKI as the test bed plays it: a CA secret holding `{}` (the issuer makes the CAs on its first
 * call), the issuer's settings, and the control-plane functions' names. Every certificate is issued by the
 * built issuer bundle, invoked as the platform would.
 */
export class TestbedPki {
  private constructor(
    readonly issuerFunction: string,
    readonly controlFunctions: Readonly<Record<'lifecycle' | 'backup' | 'reconcile', string>>,
    private readonly caSecret: string,
    private readonly groupName: string,
  ) {}

  static async create(name: string, groupName: string): Promise<TestbedPki> {
    const secret = await new SecretsManagerClient({}).send(new CreateSecretCommand({ Name: `${name}-ca`, SecretString: '{}' }));
    return new TestbedPki(`${name}-issuer`, { lifecycle: `${name}-lifecycle`, backup: `${name}-backup`, reconcile: `${name}-reconcile` }, secret.ARN ?? `${name}-ca`, groupName);
  }

  /** The issuer function's environment (its endpoints come from `extra`: the Auto Scaling shim's). */
  issuerEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
    return handlerEnv({
      ETCD_ASG_NAME: this.groupName,
      ETCD_AWS_CA_SECRET: this.caSecret,
      ETCD_AWS_NODE_ROLE: TESTBED_NODE_ROLE,
      ETCD_AWS_CONTROL_ROLES: TESTBED_CONTROL_ROLE,
      ETCD_AWS_CONTROL_FUNCTIONS: Object.values(this.controlFunctions).join(','),
      AWS_LAMBDA_FUNCTION_NAME: this.issuerFunction,
      ...extra,
    });
  }

  /** What a control-plane function's environment adds under TLS: its name, its role's session, the issuer. */
  async functionEnv(fn: keyof TestbedPki['controlFunctions'], lambdaEndpoint: string): Promise<Record<string, string>> {
    const name = this.controlFunctions[fn];
    const c = await sessionCredentials(TESTBED_CONTROL_ROLE, name);
    return {
      AWS_LAMBDA_FUNCTION_NAME: name,
      AWS_ACCESS_KEY_ID: c.accessKeyId,
      AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
      ...(c.sessionToken ? { AWS_SESSION_TOKEN: c.sessionToken } : {}),
      AWS_ENDPOINT_URL_LAMBDA: lambdaEndpoint,
      ETCD_AWS_TLS: 'on',
      ETCD_AWS_ISSUER_FUNCTION: this.issuerFunction,
    };
  }

  /**
   * The root certificate a control-plane function (`as`) gets, written to `dir`: the test's own clients
   * (writers, etcdctl, checks) act with the control plane's identity, as an operator holding it would.
   */
  async controlClient(dir: string, lambdaEndpoint: string, as: keyof TestbedPki['controlFunctions'] = 'reconcile'): Promise<ClientTls> {
    const region = process.env.AWS_REGION ?? 'us-east-1';
    const credentials = await sessionCredentials(TESTBED_CONTROL_ROLE, this.controlFunctions[as]);
    const issued = await requestCertificate(
      { lambda: new LambdaClient({ endpoint: lambdaEndpoint }), functionName: this.issuerFunction, region, stsEndpoint: stsEndpoint(region), credentials: () => Promise.resolve(credentials) },
      'root',
      { ips: [], dnsNames: [] },
    );
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const files = { caFile: path.join(dir, 'ca.crt'), certFile: path.join(dir, 'root.crt'), keyFile: path.join(dir, 'root.key') };
    writeFileSync(files.caFile, issued.clientCaPem);
    writeFileSync(files.certFile, issued.certificatePem);
    writeFileSync(files.keyFile, issued.keyPem, { mode: 0o600 });
    return { ...files, caPem: Buffer.from(issued.clientCaPem), certPem: Buffer.from(issued.certificatePem), keyPem: Buffer.from(issued.keyPem) };
  }
}

/**
 * The client identity the test bed's own etcd clients use (etcdctl, the writer, the checks): set by a
 * sandbox that runs with TLS, for as long as it runs; undefined for plaintext. One sandbox per process.
 */
let current: ClientTls | undefined;

export function useClientTls(tls: ClientTls | undefined): void {
  current = tls;
}

export function clientTls(): ClientTls | undefined {
  return current;
}

/** etcd URL scheme of the test bed's current cluster. */
export const scheme = (): 'http' | 'https' => (current ? 'https' : 'http');

/** The client URL of an instance's etcd. */
export const clientUrlOf = (ip: string, port = 2379): string => `${scheme()}://${ip}:${port}`;

/** etcdctl's flags for the current identity. */
export function etcdctlTlsArgs(): string[] {
  return current ? ['--cacert', current.caFile, '--cert', current.certFile, '--key', current.keyFile] : [];
}

/** `etcd3` client options for the current identity (certificate authentication: no password). */
export function etcd3Credentials(): { credentials?: { rootCertificate: Buffer; certChain: Buffer; privateKey: Buffer } } {
  return current ? { credentials: { rootCertificate: current.caPem, certChain: current.certPem, privateKey: current.keyPem } } : {};
}

/** `Etcd3Cluster`'s TLS option for the current identity. */
export function etcdClusterTls(): { tls?: () => EtcdTlsCredentials } {
  const tls = current;
  return tls ? { tls: () => ({ caPem: tls.caPem, certPem: tls.certPem, keyPem: tls.keyPem }) } : {};
}

/** GET on an etcd client URL (`/version`, `/health`) with the current identity's certificate; the body as JSON. */
export async function etcdHttpGet(url: string): Promise<unknown> {
  const tls = current;
  if (!tls) return (await fetch(url, { signal: AbortSignal.timeout(5000) })).json();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca: tls.caPem, cert: tls.certPem, key: tls.keyPem, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}
