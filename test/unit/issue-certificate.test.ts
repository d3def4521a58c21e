import { beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthorities } from '../../core/aws/ca-store.js';
import { IdentityRefusedError, requestDigest } from '../../core/aws/caller-identity.js';
import type { CallerFacts, CallerInstance } from '../../core/domain/issuance.js';
import { EtcdAwsError, InvalidEventError } from '../../core/errors.js';
import { createCertificateAuthority, createKeyAndCsr, describeCertificate } from '../../core/pki/x509.js';
import { issueNodeCertificate, type IssuerDeps } from '../../core/use-cases/issue-certificate.js';
import { recordingLog } from '../support/fixtures.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const ID = 'i-0123456789abcdef0';
let cas: CertificateAuthorities;
let csrPem: string;

beforeAll(async () => {
  const window = { notBefore: new Date(NOW - 3600_000), notAfter: new Date(NOW + 365 * 86_400_000) };
  cas = { peer: await createCertificateAuthority({ name: 'peer CA', ...window }), client: await createCertificateAuthority({ name: 'client CA', ...window }) };
  csrPem = (await createKeyAndCsr({ name: 'root', ips: ['10.0.1.5'], dnsNames: [] })).csrPem;
});

const digest = (pem: string) => requestDigest('peer', pem);

function deps(over: { caller?: Partial<CallerFacts> | Error; instance?: CallerInstance | undefined } = {}): IssuerDeps & { log: ReturnType<typeof recordingLog>; authorityReads: number } {
  const log = recordingLog();
  const d = {
    authorityReads: 0,
    authorities: () => {
      d.authorityReads += 1;
      return Promise.resolve(cas);
    },
    verifyCaller: (): Promise<CallerFacts> => {
      if (over.caller instanceof Error) return Promise.reject(over.caller);
      return Promise.resolve({ arn: `arn:aws:sts::123456789012:assumed-role/NodeRole/${ID}`, signedCsrSha256: digest(csrPem), signedAudience: 'issuer', ...over.caller });
    },
    describeInstance: (): Promise<CallerInstance | undefined> =>
      Promise.resolve('instance' in over ? over.instance : { instanceId: ID, groupName: 'etcd', lifecycleState: 'InService', privateIp: '10.0.1.5', privateDnsName: undefined }),
    policy: { accountId: '123456789012', nodeRoleName: 'NodeRole', controlRoleNames: ['BackupRole'],
      controlFunctionNames: ['etcd-backup'], controlLifetimeMs: 3600_000, groupName: 'etcd', audience: 'issuer', serverDnsNames: [], lifetimeMs: 86_400_000, backdateMs: 60_000 },
    now: () => NOW,
    log,
  };
  return d;
}
const identity = { headers: { authorization: 'AWS4-HMAC-SHA256 (checked by verifyCaller)' }, body: 'Action=GetCallerIdentity&Version=2011-06-15' };

describe('issueNodeCertificate', () => {
  it('issues a peer certificate signed by the peer CA, with both CAs to trust, and logs why', async () => {
    const d = deps();
    const out = await issueNodeCertificate({ kind: 'peer', csr: csrPem, identity }, d);
    expect(out).toMatchObject({ status: 'issued', issuerPem: cas.peer.certPem, peerCaPem: cas.peer.certPem, clientCaPem: cas.client.certPem, notAfter: new Date(NOW + 86_400_000).toISOString() });
    const cert = out.status === 'issued' ? out.certificatePem : '';
    expect(describeCertificate(cert, cas.peer.certPem)).toMatchObject({ commonName: 'etcd-peer', ips: ['10.0.1.5'], signedByCa: true });
    expect(describeCertificate(cert, cas.client.certPem).signedByCa).toBe(false);
    expect(d.log.lines).toContainEqual(expect.objectContaining({ message: 'certificate issued', fields: expect.objectContaining({ caller: ID, reason: expect.stringContaining('InService') as unknown }) as unknown }));
  });

  it.each<[string, unknown, ReturnType<typeof deps>, string, string]>([
    ['a request of the wrong shape', { kind: 'admin', csr: 'x' }, deps(), 'bad-request', 'kind'],
    ['a CSR that is not one', { kind: 'peer', csr: 'hello', identity }, deps(), 'bad-request', 'not a PEM PKCS#10'],
    ['an identity request the issuer will not send', { kind: 'peer', csr: '', identity }, deps({ caller: new InvalidEventError('carries headers the issuer does not pass on: x-forwarded-for') }), 'bad-request', 'x-forwarded-for'],
    ['STS refusing the signature', { kind: 'peer', csr: '', identity }, deps({ caller: new IdentityRefusedError('STS refused the signed identity request: SignatureDoesNotMatch') }), 'identity-refused', 'SignatureDoesNotMatch'],
    ['an instance that left the group', { kind: 'peer', csr: '', identity }, deps({ instance: { instanceId: ID, groupName: 'etcd', lifecycleState: 'Terminating:Wait', privateIp: '10.0.1.5', privateDnsName: undefined } }), 'instance-not-active', 'Terminating:Wait'],
    ['an unknown instance', { kind: 'peer', csr: '', identity }, deps({ instance: undefined }), 'instance-unknown', ID],
  ])('refuses %s, saying what is wrong, without reading the CA', async (_why, event, d, code, says) => {
    const e = event as { csr?: string };
    if (e.csr === '') e.csr = csrPem;
    const out = await issueNodeCertificate(event, d);
    expect(out).toMatchObject({ status: 'refused', code });
    expect(out.status === 'refused' ? out.reason : '').toContain(says);
    expect(d.authorityReads).toBe(0);
    expect(d.log.lines).toContainEqual(expect.objectContaining({ level: 'warn', message: 'certificate refused', fields: expect.objectContaining({ code }) as unknown }));
  });

  it('asks Auto Scaling nothing for a root request, nor for a caller that is no instance session of the node role', async () => {
    const asked: string[] = [];
    for (const [kind, arn] of [
      ['root', `arn:aws:sts::123456789012:assumed-role/BackupRole/etcd-backup`],
      ['peer', `arn:aws:sts::123456789012:assumed-role/OtherRole/${ID}`],
    ] as const) {
      const d = deps({ caller: { arn } });
      d.describeInstance = (id) => {
        asked.push(id);
        return Promise.resolve(undefined);
      };
      await issueNodeCertificate({ kind, csr: csrPem, identity }, d);
    }
    expect(asked).toEqual([]);
  });

  it('throws what a retry can fix (STS unreachable) instead of refusing', async () => {
    const out = issueNodeCertificate({ kind: 'peer', csr: csrPem, identity }, deps({ caller: new EtcdAwsError('could not reach STS', { retryable: true }) }));
    await expect(out).rejects.toMatchObject({ retryable: true });
  });
});
