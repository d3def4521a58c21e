/**
 * Proof of who calls the issuer, made by AWS itself (docs/ARCHITECTURE.md, "Certificates"). The node signs an
 * STS GetCallerIdentity request with its instance profile's credentials, the CSR's digest and the issuer's
 * name in signed headers, and sends it unsent to the issuer; the issuer sends it to STS, which checks the
 * signature and answers with the caller's ARN (`assumed-role/NodeRole/i-…`). It is the scheme of Vault's
 * AWS IAM auth method. It needs nothing a plain `lambda:Invoke` does not: no function URL (public internet
 * only, missing in some regions), and STS and Lambda both have VPC endpoints.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import * as z from 'zod';
import { EtcdAwsError, InvalidEventError } from '../errors.js';
import type { CallerFacts } from '../domain/issuance.js';

/** Credentials that sign the request: the instance profile's, from IMDS. */
export interface SigningCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
}

export const CSR_DIGEST_HEADER = 'x-etcd-aws-csr-sha256';
export const AUDIENCE_HEADER = 'x-etcd-aws-issuer';
const BODY = 'Action=GetCallerIdentity&Version=2011-06-15';
/** Headers the issuer passes on to STS; any other is refused. */
const ALLOWED_HEADERS = new Set(['authorization', 'content-type', 'host', 'x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token', CSR_DIGEST_HEADER, AUDIENCE_HEADER]);

/** A signed GetCallerIdentity request, as the node sends it to the issuer. */
export interface SignedIdentityRequest {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Printable ASCII only: anything else could not be sent as an HTTP header, and is no request of ours. */
const headerText = z.string().max(4096).regex(/^[\x20-\x7e]*$/, 'header values are printable ASCII');
export const signedIdentityRequestSchema = z.object({
  headers: z.record(z.string().max(64).regex(/^[A-Za-z0-9-]+$/, 'header names are letters, digits and dashes'), headerText),
  body: z.string().max(256),
});

/**
 * STS's endpoint for `region`, the same on both sides: the one AWS_ENDPOINT_URL_STS (or AWS_ENDPOINT_URL)
 * names when set (the test bed's moto), else the regional endpoint.
 */
export function stsEndpoint(region: string, env: NodeJS.ProcessEnv = process.env): URL {
  const configured = env.AWS_ENDPOINT_URL_STS ?? env.AWS_ENDPOINT_URL;
  const url = new URL(configured ?? `https://sts.${region}.${region.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com'}/`);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/** Signs the request that proves this caller's identity for one CSR and one issuer. Sends nothing. */
export async function signIdentityRequest(options: {
  credentials: SigningCredentials;
  region: string;
  endpoint: URL;
  csrSha256: string;
  audience: string;
  now?: Date;
}): Promise<SignedIdentityRequest> {
  const signer = new SignatureV4({ credentials: options.credentials, region: options.region, service: 'sts', sha256: Hash.bind(null, 'sha256') });
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: options.endpoint.protocol,
      hostname: options.endpoint.hostname,
      ...(options.endpoint.port ? { port: Number(options.endpoint.port) } : {}),
      path: options.endpoint.pathname,
      headers: {
        host: options.endpoint.host,
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        [CSR_DIGEST_HEADER]: options.csrSha256,
        [AUDIENCE_HEADER]: options.audience,
      },
      body: BODY,
    },
    options.now ? { signingDate: options.now } : {},
  );
  return { headers: Object.fromEntries(Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), v])), body: BODY };
}

/** STS would not vouch for the caller: a bad or expired signature, an unknown key. Not retryable. */
export class IdentityRefusedError extends EtcdAwsError {}

/** The one form of SigV4 Authorization header accepted: each component once, in this order. */
const AUTHORIZATION = /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/sts\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=[0-9a-f]{64}$/;
/** Headers the signature must cover: what binds the request to this STS, this time, this CSR and this issuer. */
const MUST_SIGN = ['host', 'x-amz-date', CSR_DIGEST_HEADER, AUDIENCE_HEADER];

/**
 * The caller STS names for a signed request, and which of our headers its signature covers. A request that is
 * not a plain signed GetCallerIdentity for this STS endpoint and region, its signature covering the host, the
 * date, the CSR digest and the issuer's name, is refused (InvalidEventError) before anything is sent; STS's
 * refusal is an IdentityRefusedError with STS's own message; STS unreachable is a retryable error.
 */
export async function verifyIdentityRequest(signed: SignedIdentityRequest, endpoint: URL, region: string, timeoutMs = 5000): Promise<CallerFacts> {
  if (signed.body !== BODY) throw new InvalidEventError(`the identity request's body must be exactly "${BODY}"`);
  const headers = Object.fromEntries(Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), v]));
  const unexpected = Object.keys(headers).filter((k) => !ALLOWED_HEADERS.has(k));
  if (unexpected.length > 0) throw new InvalidEventError(`the identity request carries headers the issuer does not pass on: ${unexpected.join(', ')}`);
  if (headers.host !== endpoint.host) {
    throw new InvalidEventError(`the identity request is signed for host ${headers.host ?? '(none)'}, not ${endpoint.host}: sign it for the STS endpoint of the issuer's region`);
  }
  const authorization = AUTHORIZATION.exec(headers.authorization ?? '');
  if (!authorization) {
    throw new InvalidEventError('the identity request has no AWS Signature Version 4 Authorization header of the one accepted form (Credential, SignedHeaders, Signature, once each)');
  }
  if (authorization[3] !== region) throw new InvalidEventError(`the identity request is signed for region ${String(authorization[3])}, not ${region}`);
  const signedHeaders = (authorization[4] as string).split(';');
  const unsigned = MUST_SIGN.filter((h) => !signedHeaders.includes(h) || headers[h] === undefined);
  if (unsigned.length > 0) throw new InvalidEventError(`the identity request's signature does not cover ${unsigned.join(', ')}; make it with signIdentityRequest`);
  const arn = await callSts(endpoint, headers, timeoutMs);
  return { arn, signedCsrSha256: headers[CSR_DIGEST_HEADER], signedAudience: headers[AUDIENCE_HEADER] };
}

/**
 * What the signature binds a request to: the kind of certificate and the CSR (hex SHA-256 of both), so a
 * captured request serves neither another key nor another kind.
 */
export function requestDigest(kind: string, csrPem: string): string {
  return createHash('sha256').update(`${kind}\n${csrPem}`).digest('hex');
}

async function callSts(endpoint: URL, headers: Record<string, string>, timeoutMs: number): Promise<string> {
  const send = endpoint.protocol === 'https:' ? httpsRequest : httpRequest;
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = send(endpoint, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(BODY)) }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > 64 * 1024) req.destroy(new Error('STS answered more than 64 KiB'));
        else chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`STS did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(BODY);
  }).catch((error: unknown) => {
    throw new EtcdAwsError(`could not reach STS at ${endpoint.origin} to check the caller: ${(error as Error).message}`, { cause: error, retryable: true });
  });
  if (status >= 500 || status === 429) throw new EtcdAwsError(`STS answered ${status} when checking the caller; try again`, { retryable: true });
  if (status !== 200) {
    const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? `HTTP ${status}`;
    const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1] ?? '';
    throw new IdentityRefusedError(`STS refused the signed identity request: ${code}${message ? ` (${message})` : ''}`);
  }
  const arns = [...body.matchAll(/<Arn>([^<]*)<\/Arn>/g)].map((m) => m[1] as string);
  if (arns.length !== 1) throw new IdentityRefusedError(`STS's GetCallerIdentity answer has ${arns.length} ARNs, not one`);
  return arns[0] as string;
}
