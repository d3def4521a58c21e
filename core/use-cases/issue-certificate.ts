import * as z from 'zod';
import type { CertificateAuthorities } from '../aws/ca-store.js';
import { IdentityRefusedError, requestDigest, signedIdentityRequestSchema, type SignedIdentityRequest } from '../aws/caller-identity.js';
import { CERTIFICATE_KINDS, callerInstanceId, decideIssuance, type CallerFacts, type CallerInstance, type IssuancePolicy, type RefusalCode } from '../domain/issuance.js';
import { InvalidEventError } from '../errors.js';
import type { Log } from '../logger.js';
import { issueCertificate, readCsr } from '../pki/x509.js';

/** What a node sends the issuer (through lambda:Invoke). */
export const issueRequestSchema = z.object({
  kind: z.enum(CERTIFICATE_KINDS as [string, ...string[]]).transform((k) => k as (typeof CERTIFICATE_KINDS)[number]),
  csr: z.string(),
  identity: signedIdentityRequestSchema,
});
export type IssueRequest = z.input<typeof issueRequestSchema>;

export type IssueResult =
  | {
      readonly status: 'issued';
      readonly certificatePem: string;
      /** The CA that signed it, and the CAs a node trusts: the peer CA for peers, the client CA for clients. */
      readonly issuerPem: string;
      readonly peerCaPem: string;
      readonly clientCaPem: string;
      readonly notAfter: string;
    }
  | { readonly status: 'refused'; readonly code: RefusalCode | 'bad-request' | 'identity-refused'; readonly reason: string };

export interface IssuerDeps {
  authorities(): Promise<CertificateAuthorities>;
  /** The caller STS names for the signed request (core/aws/caller-identity.ts). */
  verifyCaller(signed: SignedIdentityRequest): Promise<CallerFacts>;
  describeInstance(instanceId: string): Promise<CallerInstance | undefined>;
  readonly policy: IssuancePolicy;
  now(): number;
  readonly log: Log;
}

/**
 * One certificate request: checks the caller with STS, its instance with Auto Scaling and EC2, the CSR, then
 * signs what decideIssuance allows. A request that is wrong is answered with a refusal that names what is
 * wrong; only what a retry can fix (STS or AWS unreachable) is thrown.
 */
export async function issueNodeCertificate(event: unknown, deps: IssuerDeps): Promise<IssueResult> {
  const refused = (code: Extract<IssueResult, { status: 'refused' }>['code'], reason: string, fields: Record<string, unknown> = {}): IssueResult => {
    deps.log.warn('certificate refused', { code, reason, ...fields });
    return { status: 'refused', code, reason };
  };
  const parsed = issueRequestSchema.safeParse(event);
  if (!parsed.success) return refused('bad-request', `the request is not {kind: peer|server|client|root|user, csr, identity: {headers, body}}: ${z.prettifyError(parsed.error)}`);
  const request = parsed.data;

  let csr;
  let caller: CallerFacts;
  try {
    csr = await readCsr(request.csr);
    caller = await deps.verifyCaller(request.identity);
  } catch (error) {
    if (error instanceof InvalidEventError) return refused('bad-request', error.message, { kind: request.kind });
    if (error instanceof IdentityRefusedError) return refused('identity-refused', error.message, { kind: request.kind });
    throw error;
  }
  const csrSha256 = requestDigest(request.kind, request.csr);
  // Auto Scaling and EC2 are asked only about an instance session of the node role, for a node certificate.
  const who = request.kind === 'root' ? undefined : callerInstanceId(caller.arn, deps.policy);
  const instance = who && 'instanceId' in who ? await deps.describeInstance(who.instanceId) : undefined;
  const now = deps.now();
  const decision = decideIssuance({ kind: request.kind, csr, csrSha256 }, caller, instance, deps.policy, now);
  if (decision.kind === 'refuse') return refused(decision.code, decision.reason, { kind: request.kind, caller: caller.arn });

  const cas = await deps.authorities();
  const ca = cas[decision.ca];
  const certificatePem = await issueCertificate({ ca, csr, profile: decision.profile, notBefore: new Date(decision.notBefore), notAfter: new Date(decision.notAfter) });
  deps.log.info('certificate issued', {
    kind: request.kind,
    caller: decision.caller,
    commonName: decision.profile.commonName,
    ips: decision.profile.ips,
    dnsNames: decision.profile.dnsNames,
    notAfter: new Date(decision.notAfter).toISOString(),
    reason: decision.reason,
  });
  return {
    status: 'issued',
    certificatePem,
    issuerPem: ca.certPem,
    peerCaPem: cas.peer.certPem,
    clientCaPem: cas.client.certPem,
    notAfter: new Date(decision.notAfter).toISOString(),
  };
}
