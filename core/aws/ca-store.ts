/**
 * The cluster's two certificate authorities, kept in one Secrets Manager secret that only the issuer function
 * may read (infra/pki.yml). The stack creates the secret holding `{}`; the first issuer call makes both CAs and
 * writes them as the secret's version with a fixed client request token, which Secrets Manager accepts once:
 * two first calls racing both write that version, one of them wins, the other is refused
 * (ResourceExistsException) and reads the winner's. Every node therefore trusts the same CAs.
 */
import { GetSecretValueCommand, PutSecretValueCommand, ResourceExistsException, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import * as z from 'zod';
import { ConfigError, EtcdAwsError } from '../errors.js';
import { createCertificateAuthority, type CertifiedKey } from '../pki/x509.js';

/** The peer CA signs peer certificates only; the client CA signs client-port server and client certificates. */
export interface CertificateAuthorities {
  readonly peer: CertifiedKey;
  readonly client: CertifiedKey;
}

/** The one version token of the first CAs: Secrets Manager accepts one value per token (32 to 64 characters). */
export const INITIAL_CA_TOKEN = 'etcd-aws-certificate-authorities-initial-v1';
/** CAs outlive every cluster we expect; rotating them is a documented procedure, not a timer. */
const CA_LIFETIME_MS = 20 * 365 * 24 * 3600_000;

const certifiedKey = z.object({ certPem: z.string().startsWith('-----BEGIN CERTIFICATE-----'), keyPem: z.string().startsWith('-----BEGIN PRIVATE KEY-----') });
const storedSchema = z.union([z.object({ version: z.literal(1), peer: certifiedKey, client: certifiedKey }), z.object({}).strict()]);

export class SecretsManagerCaStore {
  private cached: Promise<CertificateAuthorities> | undefined;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly secretId: string,
    private readonly clusterName: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The CAs, made on the first call of any issuer; read once per container. */
  authorities(): Promise<CertificateAuthorities> {
    this.cached ??= this.load().catch((error: unknown) => {
      this.cached = undefined;
      throw error;
    });
    return this.cached;
  }

  private async read(): Promise<CertificateAuthorities | undefined> {
    const out = await this.client.send(new GetSecretValueCommand({ SecretId: this.secretId }));
    let parsed: unknown;
    try {
      parsed = JSON.parse(out.SecretString ?? '');
    } catch (error) {
      throw new ConfigError(`secret ${this.secretId} does not hold JSON; it must hold the cluster's CAs or {} before the first issue (restore it from its previous version)`, { cause: error });
    }
    const stored = storedSchema.safeParse(parsed);
    if (!stored.success) {
      throw new ConfigError(`secret ${this.secretId} holds neither the cluster's CAs nor {}: ${z.prettifyError(stored.error)}; restore its previous version`);
    }
    return 'peer' in stored.data ? { peer: stored.data.peer, client: stored.data.client } : undefined;
  }

  private async load(): Promise<CertificateAuthorities> {
    const existing = await this.read();
    if (existing) return existing;
    const notBefore = new Date(this.now() - 3600_000);
    const notAfter = new Date(this.now() + CA_LIFETIME_MS);
    const made = {
      version: 1 as const,
      peer: await createCertificateAuthority({ name: `etcd-aws peer CA ${this.clusterName}`, notBefore, notAfter }),
      client: await createCertificateAuthority({ name: `etcd-aws client CA ${this.clusterName}`, notBefore, notAfter }),
    };
    try {
      await this.client.send(new PutSecretValueCommand({ SecretId: this.secretId, SecretString: JSON.stringify(made), ClientRequestToken: INITIAL_CA_TOKEN }));
    } catch (error) {
      if (!(error instanceof ResourceExistsException)) throw error;
      // Another first call won: use its CAs.
    }
    const stored = await this.read();
    // Secrets Manager may answer with the older version for a moment after a write.
    if (!stored) throw new EtcdAwsError(`secret ${this.secretId} still holds {} just after the CAs were written; try again`, { retryable: true });
    return stored;
  }
}
