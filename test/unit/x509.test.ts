import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidEventError } from '../../core/errors.js';
import { createCertificateAuthority, createKeyAndCsr, describeCertificate, issueCertificate, readCsr, type CertifiedKey } from '../../core/pki/x509.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const LATER = new Date('2026-12-05T12:00:00Z');
let ca: CertifiedKey;

beforeAll(async () => {
  ca = await createCertificateAuthority({ name: 'test CA', notBefore: NOW, notAfter: new Date('2046-01-01T00:00:00Z') });
});

/** The CSR's DER with one byte of its signature (the last byte) changed, as PEM. */
function withAlteredSignature(pem: string): string {
  const der = Buffer.from(x509.PemConverter.decode(pem)[0] as ArrayBuffer);
  der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01;
  return x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
}

describe('certificate authority', () => {
  it('is a self-signed CA limited to signing leaf certificates', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(new x509.X509Certificate(ca.certPem).getExtension(x509.BasicConstraintsExtension)?.pathLength).toBe(0);
  });
});

describe('readCsr', () => {
  it('reads the key type, a valid signature and the names a node asks for', async () => {
    const { csrPem, keyPem } = await createKeyAndCsr({ name: 'ignored', ips: ['10.0.1.5'], dnsNames: ['ip-10-0-1-5.ec2.internal'] });
    expect(keyPem).toContain('BEGIN PRIVATE KEY');
    expect(await readCsr(csrPem)).toMatchObject({ keyType: 'P-256', signatureValid: true, ips: ['10.0.1.5'], dnsNames: ['ip-10-0-1-5.ec2.internal'] });
  });

  it('tells a CSR whose signature was altered', async () => {
    const { csrPem } = await createKeyAndCsr({ name: 'x', ips: ['10.0.1.5'], dnsNames: [] });
    expect((await readCsr(withAlteredSignature(csrPem))).signatureValid).toBe(false);
  });

  it('names a key type that is not P-256 and does not trust its signature', async () => {
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=x', keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } });
    expect(await readCsr(csr.toString('pem'))).toMatchObject({ keyType: 'P-384', signatureValid: false });
  });

  it.each([
    ['garbage', 'hello', 'not a PEM PKCS#10 certificate request'],
    ['a certificate instead of a CSR', '', 'no "BEGIN CERTIFICATE REQUEST" block'],
    ['a broken CSR body', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', 'not a PEM PKCS#10 certificate request'],
    ['an oversized CSR', 'A'.repeat(20_000), 'under 16384'],
  ])('refuses %s with an InvalidEventError that says so', async (_why, pem, says) => {
    const input = pem === '' ? ca.certPem : pem;
    const error = await readCsr(input).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidEventError);
    expect((error as Error).message).toContain(says);
  });

  it('refuses subject alternative names other than IPs and DNS names', async () => {
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=x',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://cluster/root' }])],
    });
    await expect(readCsr(csr.toString('pem'))).rejects.toThrow(/of type url; only IP addresses and DNS names/);
  });
});

describe('issueCertificate', () => {
  it("certifies the CSR's key with the profile's subject and names, never the CSR's subject", async () => {
    const { csrPem, keyPem } = await createKeyAndCsr({ name: 'root', ips: ['10.0.1.5'], dnsNames: ['ip-10-0-1-5.ec2.internal'] });
    const csr = await readCsr(csrPem);
    const pem = await issueCertificate({
      ca,
      csr,
      profile: { commonName: 'etcd-peer', ips: ['10.0.1.5'], dnsNames: ['ip-10-0-1-5.ec2.internal'], serverAuth: true, clientAuth: true },
      notBefore: NOW,
      notAfter: LATER,
    });
    expect(describeCertificate(pem, ca.certPem)).toEqual({
      commonName: 'etcd-peer',
      notBefore: NOW,
      notAfter: LATER,
      ips: ['10.0.1.5'],
      dnsNames: ['ip-10-0-1-5.ec2.internal'],
      signedByCa: true,
    });
    const cert = new X509Certificate(pem);
    expect(cert.checkIP('10.0.1.5')).toBe('10.0.1.5');
    expect(cert.checkIP('10.0.2.7')).toBeUndefined();
    expect(cert.ca).toBe(false);
    expect(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(keyPem))).toBe(true);
    expect(new x509.X509Certificate(pem).getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
  });

  it('issues a client-only certificate without names', async () => {
    const csr = await readCsr((await createKeyAndCsr({ name: 'x', ips: [], dnsNames: [] })).csrPem);
    const pem = await issueCertificate({ ca, csr, profile: { commonName: 'etcd-aws-agent', ips: [], dnsNames: [], serverAuth: false, clientAuth: true }, notBefore: NOW, notAfter: LATER });
    expect(new x509.X509Certificate(pem).getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);
    expect(describeCertificate(pem).ips).toEqual([]);
  });

  it('is not signed by another CA', async () => {
    const other = await createCertificateAuthority({ name: 'other CA', notBefore: NOW, notAfter: LATER });
    const csr = await readCsr((await createKeyAndCsr({ name: 'x', ips: ['10.0.1.5'], dnsNames: [] })).csrPem);
    const pem = await issueCertificate({ ca: other, csr, profile: { commonName: 'etcd-peer', ips: ['10.0.1.5'], dnsNames: [], serverAuth: true, clientAuth: true }, notBefore: NOW, notAfter: LATER });
    expect(describeCertificate(pem, ca.certPem).signedByCa).toBe(false);
    expect(describeCertificate(pem, other.certPem).signedByCa).toBe(true);
  });
});
