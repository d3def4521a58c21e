/**
 * Certificates, keys and CSRs, through @peculiar/x509 (docs/design/tls-and-auth-research.md §5): it parses and
 * builds the ASN.1, and Node's own WebCrypto does every signature and verification. Every key is ECDSA P-256
 * with SHA-256, which etcd (Go's crypto/tls) and gRPC accept. PEM in, PEM out; nothing here touches the disk.
 */
import 'reflect-metadata';
import { webcrypto, X509Certificate as NodeX509Certificate, randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { InvalidEventError } from '../errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const SAN_OID = '2.5.29.17';

/** A certificate and its private key (PKCS#8), both PEM. */
export interface CertifiedKey {
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * What a CSR asks for, once its signature has been checked. Node and root certificates get the subject the
 * issuer sets; only a user certificate takes the CSR's CN, the etcd user it asks to be.
 */
export interface CsrRequest {
  /** "P-256" for the only key type accepted; otherwise a description of what was sent. */
  readonly keyType: string;
  /** True when the CSR is signed by the key it carries (proof the sender holds that key). */
  readonly signatureValid: boolean;
  readonly ips: readonly string[];
  readonly dnsNames: readonly string[];
  /** The subject's first CN, undefined when it has none. */
  readonly commonName: string | undefined;
  /** The public key, SubjectPublicKeyInfo DER: what the certificate will certify. */
  readonly publicKey: ArrayBuffer;
}

/** The certificate to make: the issuer's decision (core/domain/issuance.ts). */
export interface CertificateProfile {
  readonly commonName: string;
  readonly ips: readonly string[];
  readonly dnsNames: readonly string[];
  readonly serverAuth: boolean;
  readonly clientAuth: boolean;
}

async function exportKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importKeyPem(pem: string): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decode(pem)[0] as ArrayBuffer, ALGORITHM, false, ['sign']);
}

function serialNumber(): string {
  // 16 random bytes, first bit clear: a positive INTEGER, unpredictable (CA/B forum asks for 64 bits at least).
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f;
  return bytes.toString('hex');
}

function sanExtension(ips: readonly string[], dnsNames: readonly string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension([
    ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...ips.map((value) => ({ type: 'ip' as const, value })),
  ]);
}

/** A new self-signed CA: `name` is its subject CN; it may sign leaf certificates only (path length 0). */
export async function createCertificateAuthority(options: { name: string; notBefore: Date; notAfter: Date }): Promise<CertifiedKey> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [options.name] }],
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * A new key and a CSR for it, made where the key will live (the node): only the CSR leaves. The CSR names
 * the addresses the certificate should carry; its subject is a hint the issuer does not use.
 */
export async function createKeyAndCsr(options: { name: string; ips: readonly string[]; dnsNames: readonly string[] }): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [options.name] }],
    keys,
    signingAlgorithm: SIGNING,
    extensions: options.ips.length + options.dnsNames.length > 0 ? [sanExtension(options.ips, options.dnsNames)] : [],
  });
  return { keyPem: await exportKeyPem(keys.privateKey), csrPem: csr.toString('pem') };
}

/** Largest CSR read: a P-256 CSR with a few names is under 1 KiB. */
export const MAX_CSR_BYTES = 16 * 1024;

/**
 * Reads a PEM CSR: its key type, whether its signature holds, and the addresses it asks for. A CSR that is
 * not one (garbage, another PEM block, too large) is an InvalidEventError that says so.
 */
export async function readCsr(pem: string): Promise<CsrRequest> {
  if (pem.length > MAX_CSR_BYTES) throw new InvalidEventError(`the CSR is ${pem.length} bytes; a certificate request for a node is under ${MAX_CSR_BYTES}`);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    if (!/-----BEGIN CERTIFICATE REQUEST-----/.test(pem)) throw new Error('no "BEGIN CERTIFICATE REQUEST" block');
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (error) {
    throw new InvalidEventError(`the CSR is not a PEM PKCS#10 certificate request (${(error as Error).message}); send the one createKeyAndCsr made`, { cause: error });
  }
  const algorithm = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  const keyType = algorithm.name === 'ECDSA' && algorithm.namedCurve ? algorithm.namedCurve : `${algorithm.name ?? 'unknown'}${algorithm.namedCurve ? ` ${algorithm.namedCurve}` : ''}`;
  let signatureValid = false;
  if (keyType === 'P-256') signatureValid = await csr.verify().catch(() => false);
  const san = csr.getExtension(SAN_OID);
  const names = san ? new x509.SubjectAlternativeNameExtension(san.rawData).names.items : [];
  const unsupported = names.filter((n) => n.type !== 'ip' && n.type !== 'dns');
  if (unsupported.length > 0) {
    throw new InvalidEventError(`the CSR asks for subject alternative names of type ${[...new Set(unsupported.map((n) => n.type))].join(', ')}; only IP addresses and DNS names are issued`);
  }
  return {
    keyType,
    signatureValid,
    ips: names.filter((n) => n.type === 'ip').map((n) => n.value),
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    commonName: csr.subjectName.getField('CN')[0],
    publicKey: csr.publicKey.rawData,
  };
}

/** Signs a leaf certificate for the CSR's key with the CA's key, as `profile` says (never as the CSR says). */
export async function issueCertificate(options: {
  ca: CertifiedKey;
  csr: CsrRequest;
  profile: CertificateProfile;
  notBefore: Date;
  notAfter: Date;
}): Promise<string> {
  const caCert = new x509.X509Certificate(options.ca.certPem);
  // (The library types it with the DOM's CryptoKey, which this Node-only project does not declare.)
  const publicKey = (await new x509.PublicKey(options.csr.publicKey).export(ALGORITHM, ['verify'])) as unknown as webcrypto.CryptoKey;
  const usages = [
    ...(options.profile.serverAuth ? [x509.ExtendedKeyUsage.serverAuth] : []),
    ...(options.profile.clientAuth ? [x509.ExtendedKeyUsage.clientAuth] : []),
  ];
  const { ips, dnsNames } = options.profile;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [options.profile.commonName] }],
    issuer: caCert.subject,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    signingAlgorithm: SIGNING,
    publicKey,
    signingKey: await importKeyPem(options.ca.keyPem),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(usages, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      ...(ips.length + dnsNames.length > 0 ? [sanExtension(ips, dnsNames)] : []),
    ],
  });
  return cert.toString('pem');
}

/** The facts about a PEM certificate that callers check: subject CN, validity, SANs, and whether `ca` signed it. */
export function describeCertificate(pem: string, caPem?: string): { commonName: string; notBefore: Date; notAfter: Date; ips: string[]; dnsNames: string[]; signedByCa?: boolean } {
  const cert = new NodeX509Certificate(pem);
  const commonName = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? '';
  const sans = (cert.subjectAltName ?? '').split(', ').filter((s) => s !== '');
  return {
    commonName,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    ips: sans.filter((s) => s.startsWith('IP Address:')).map((s) => s.slice('IP Address:'.length)),
    dnsNames: sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice('DNS:'.length)),
    ...(caPem ? { signedByCa: cert.verify(new NodeX509Certificate(caPem).publicKey) && cert.checkIssued(new NodeX509Certificate(caPem)) } : {}),
  };
}
