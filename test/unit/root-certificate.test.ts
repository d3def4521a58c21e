import { InvokeCommand, LambdaClient, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeAll, describe, expect, it } from 'vitest';
import { RootCertificate } from '../../core/aws/root-certificate.js';
import { createCertificateAuthority, describeCertificate, issueCertificate, readCsr, type CertifiedKey } from '../../core/pki/x509.js';
import { recordingLog } from '../support/fixtures.js';

const HOUR = 3_600_000;
/** An Invoke answer's payload (the SDK's blob type adds helpers the handler under test never calls). */
const payload = (answer: unknown) => Buffer.from(JSON.stringify(answer)) as unknown as InvokeCommandOutput['Payload'];
const T = Date.parse('2026-11-28T00:00:00Z');

describe('RootCertificate (the functions\' etcd identity)', () => {
  let ca: CertifiedKey;
  beforeAll(async () => {
    ca = await createCertificateAuthority({ name: 'client-ca', notBefore: new Date(T - HOUR), notAfter: new Date(T + 1000 * HOUR) });
  });

  /** An issuer answering every root request with a 12-hour certificate from `issuedAt()`; counts the requests. */
  function setup(issuedAt: () => number, now: () => number) {
    const lambda = new LambdaClient({ region: 'us-east-1' });
    const mock = mockClient(lambda);
    const requests: Array<{ kind: string }> = [];
    const issuer = { down: false };
    mock.on(InvokeCommand).callsFake(async (input: { Payload: Uint8Array }) => {
      if (issuer.down) throw new Error('the issuer is throttled');
      const request = JSON.parse(Buffer.from(input.Payload).toString('utf8')) as { kind: string; csr: string };
      requests.push({ kind: request.kind });
      const certificatePem = await issueCertificate({
        ca,
        csr: await readCsr(request.csr),
        profile: { commonName: 'root', ips: [], dnsNames: [], serverAuth: false, clientAuth: true },
        notBefore: new Date(issuedAt()),
        notAfter: new Date(issuedAt() + 12 * HOUR),
      });
      return { Payload: payload({ status: 'issued', certificatePem, peerCaPem: 'unused', clientCaPem: ca.certPem }) };
    });
    const log = recordingLog();
    const root = new RootCertificate(
      {
        lambda,
        functionName: 'etcd-issuer',
        region: 'us-east-1',
        stsEndpoint: new URL('https://sts.us-east-1.amazonaws.com/'),
        credentials: () => Promise.resolve({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', sessionToken: 'token' }),
      },
      log,
      now,
    );
    return { root, requests, log, issuer };
  }

  it('asks the issuer for a root certificate once, and again only when a third of its lifetime is left', async () => {
    let now = T;
    const { root, requests, log } = setup(() => now, () => now);
    expect(() => root.credentials()).toThrow(/before ready\(\)/);
    await root.ready();
    await root.ready();
    expect(requests).toEqual([{ kind: 'root' }]);
    const first = root.credentials();
    expect(describeCertificate(first.certPem.toString(), first.caPem.toString())).toMatchObject({ commonName: 'root', signedByCa: true });
    expect(first.caPem.toString()).toBe(ca.certPem);
    now = T + 7 * HOUR;
    await root.ready();
    expect(requests).toHaveLength(1);
    now = T + 8 * HOUR + 1;
    await root.ready();
    expect(requests).toHaveLength(2);
    expect(root.credentials().keyPem.equals(first.keyPem)).toBe(false);
    expect(log.lines.filter((l) => l.message === "obtained the control plane's etcd certificate").map((l) => l.fields.reason)).toEqual([
      expect.stringContaining('missing'),
      expect.stringContaining('a third or less'),
    ]);
  });

  it('goes on with the certificate it holds while a due renewal fails, and fails once it has expired', async () => {
    let now = T;
    const { root, requests, log, issuer } = setup(() => now, () => now);
    await root.ready();
    const held = root.credentials();
    issuer.down = true;
    now = T + 10 * HOUR;
    await expect(root.ready()).resolves.toBeUndefined();
    expect(root.credentials().certPem.equals(held.certPem)).toBe(true);
    expect(requests).toHaveLength(1);
    const said = log.lines.find((l) => l.message.startsWith('could not renew'));
    expect(said?.level).toBe('warn');
    expect(said?.fields).toMatchObject({ validUntil: new Date(T + 12 * HOUR).toISOString() });
    now = T + 12 * HOUR;
    await expect(root.ready()).rejects.toThrow('the issuer is throttled');
  });

  it('keeps no certificate when the issuer refuses, and says why', async () => {
    const lambda = new LambdaClient({ region: 'us-east-1' });
    mockClient(lambda).on(InvokeCommand).resolves({ Payload: payload({ status: 'refused', code: 'caller-not-control-plane', reason: "session x is not one of this stack's functions" }) });
    const root = new RootCertificate(
      { lambda, functionName: 'etcd-issuer', region: 'us-east-1', stsEndpoint: new URL('https://sts.us-east-1.amazonaws.com/'), credentials: () => Promise.resolve({ accessKeyId: 'A', secretAccessKey: 's' }) },
      recordingLog(),
      () => T,
    );
    await expect(root.ready()).rejects.toThrow(/refused: caller-not-control-plane: session x/);
    expect(() => root.credentials()).toThrow(/before ready\(\)/);
  });
});
