import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import * as z from 'zod';
import type { CertificateKind } from '../domain/issuance.js';
import { EtcdAwsError } from '../errors.js';
import { createKeyAndCsr, describeCertificate } from '../pki/x509.js';
import { requestDigest, signIdentityRequest, type SigningCredentials } from './caller-identity.js';

/** The issuer refused the request and said why: the same request will be refused again. */
export class CertificateRefusedError extends EtcdAwsError {
  constructor(
    readonly code: string,
    reason: string,
  ) {
    super(`the certificate issuer refused: ${code}: ${reason}`);
  }
}

/** A certificate for a key made here, with the CAs to trust. */
export interface IssuedCertificate {
  readonly kind: CertificateKind;
  readonly keyPem: string;
  readonly certificatePem: string;
  readonly peerCaPem: string;
  readonly clientCaPem: string;
  readonly notBefore: number;
  readonly notAfter: number;
}

const answerSchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('issued'), certificatePem: z.string(), peerCaPem: z.string(), clientCaPem: z.string() }),
  z.object({ status: z.literal('refused'), code: z.string(), reason: z.string() }),
]);

export interface IssuerClientDeps {
  readonly lambda: LambdaClient;
  /** The issuer function's name: the request is signed for it. */
  readonly functionName: string;
  readonly region: string;
  readonly stsEndpoint: URL;
  /** The credentials that prove who asks (an instance's: its instance profile's, from IMDS). */
  credentials(): Promise<SigningCredentials>;
}

/**
 * Makes a key and a CSR for `names`, proves who asks with a signed STS request over that CSR, and asks the
 * issuer (lambda:Invoke) for the certificate. The key never leaves this process. A refusal is a
 * CertificateRefusedError with the issuer's reason; an issuer that failed is a retryable error.
 */
export async function requestCertificate(deps: IssuerClientDeps, kind: CertificateKind, names: { ips: readonly string[]; dnsNames: readonly string[] }): Promise<IssuedCertificate> {
  const { keyPem, csrPem } = await createKeyAndCsr({ name: kind, ...names });
  return { ...(await requestCertificateForCsr(deps, kind, csrPem)), keyPem };
}

/**
 * Asks the issuer to sign a CSR made elsewhere (a user's: its key stays with the user), proving who asks as
 * requestCertificate does. Returns the certificate and the CAs, checked to chain.
 */
export async function requestCertificateForCsr(deps: IssuerClientDeps, kind: CertificateKind, csrPem: string): Promise<Omit<IssuedCertificate, 'keyPem'>> {
  const identity = await signIdentityRequest({
    credentials: await deps.credentials(),
    region: deps.region,
    endpoint: deps.stsEndpoint,
    csrSha256: requestDigest(kind, csrPem),
    audience: deps.functionName,
  });
  const out = await deps.lambda.send(new InvokeCommand({ FunctionName: deps.functionName, Payload: Buffer.from(JSON.stringify({ kind, csr: csrPem, identity })) }));
  const text = Buffer.from(out.Payload ?? new Uint8Array()).toString('utf8');
  if (out.FunctionError) {
    throw new EtcdAwsError(`the certificate issuer ${deps.functionName} failed (${out.FunctionError}): ${text.slice(0, 500)}`, { retryable: true });
  }
  let answer: z.infer<typeof answerSchema>;
  try {
    answer = answerSchema.parse(JSON.parse(text));
  } catch (error) {
    throw new EtcdAwsError(`the certificate issuer ${deps.functionName} answered something else than a certificate or a refusal: ${text.slice(0, 200)}`, { cause: error, retryable: true });
  }
  if (answer.status === 'refused') throw new CertificateRefusedError(answer.code, answer.reason);
  const facts = describeCertificate(answer.certificatePem, kind === 'peer' ? answer.peerCaPem : answer.clientCaPem);
  if (!facts.signedByCa) throw new EtcdAwsError(`the certificate issuer's ${kind} certificate is not signed by the CA it names`);
  return { kind, certificatePem: answer.certificatePem, peerCaPem: answer.peerCaPem, clientCaPem: answer.clientCaPem, notBefore: facts.notBefore.getTime(), notAfter: facts.notAfter.getTime() };
}
