import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NODE_CERTIFICATE_KINDS, renewalDue, usableNow, type NodeCertificateKind, type Validity } from '../core/domain/issuance.js';
import { describeError } from '../core/errors.js';
import type { IssuedCertificate } from '../core/aws/issuer-client.js';
import type { Log } from '../core/logger.js';
import { describeCertificate } from '../core/pki/x509.js';

/**
 * The node's certificates on disk: `<dir>/current` is a symlink to one generation directory holding every
 * key, certificate and CA file, so a renewal swaps all of them at once (a rename of the link): etcd, which
 * reads a certificate and its key per handshake, never pairs a new certificate with an old key.
 */
export interface CertificateFiles {
  readonly peerCaFile: string;
  readonly clientCaFile: string;
  readonly cert: Readonly<Record<NodeCertificateKind, { readonly certFile: string; readonly keyFile: string }>>;
}

export function certificateFiles(dir: string): CertificateFiles {
  const current = path.join(dir, 'current');
  return {
    peerCaFile: path.join(current, 'peer-ca.crt'),
    clientCaFile: path.join(current, 'client-ca.crt'),
    cert: Object.fromEntries(NODE_CERTIFICATE_KINDS.map((k) => [k, { certFile: path.join(current, `${k}.crt`), keyFile: path.join(current, `${k}.key`) }])) as CertificateFiles['cert'],
  };
}

/** Validity of each installed certificate, undefined where one is missing or unreadable. */
export function installedValidity(dir: string): Array<Validity | undefined> {
  const files = certificateFiles(dir);
  return NODE_CERTIFICATE_KINDS.map((kind) => {
    try {
      const facts = describeCertificate(readFileSync(files.cert[kind].certFile, 'utf8'));
      return { notBefore: facts.notBefore.getTime(), notAfter: facts.notAfter.getTime() };
    } catch {
      return undefined;
    }
  });
}

/**
 * Writes a new generation and points `current` at it. The generation it replaces stays (a connection opened
 * with it may still be in use); every older one is removed.
 */
export function installCertificates(dir: string, issued: readonly IssuedCertificate[]): CertificateFiles {
  const last = issued.at(-1);
  if (!last || issued.length !== NODE_CERTIFICATE_KINDS.length) throw new Error(`installCertificates needs one certificate of each kind (${NODE_CERTIFICATE_KINDS.join(', ')})`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const link = path.join(dir, 'current');
  let previous: string | undefined;
  try {
    previous = readlinkSync(link);
  } catch {
    previous = undefined;
  }
  const target = mkdtempSync(path.join(dir, 'gen-'));
  for (const c of issued) {
    writeFileSync(path.join(target, `${c.kind}.key`), c.keyPem, { mode: 0o600 });
    writeFileSync(path.join(target, `${c.kind}.crt`), c.certificatePem, { mode: 0o644 });
  }
  writeFileSync(path.join(target, 'peer-ca.crt'), last.peerCaPem, { mode: 0o644 });
  writeFileSync(path.join(target, 'client-ca.crt'), last.clientCaPem, { mode: 0o644 });
  const generation = path.basename(target);
  const staged = `${target}.link`;
  symlinkSync(generation, staged);
  renameSync(staged, link);
  for (const name of readdirSync(dir)) {
    if (name !== 'current' && name !== generation && name !== previous) rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  return certificateFiles(dir);
}

/**
 * Makes sure the node has valid certificates of every kind in `dir`, renewing all of them when one is due
 * (renewalDue). `request` asks the issuer for one kind. Returns the files, and whether it renewed. When the
 * renewal fails while the installed certificates are still valid (usableNow), they are kept and the failure
 * is logged: the caller tries again later, and etcd keeps (or starts) serving meanwhile.
 */
export async function ensureCertificates(
  dir: string,
  request: (kind: NodeCertificateKind) => Promise<IssuedCertificate>,
  options: { now: () => number; log: Log },
): Promise<{ files: CertificateFiles; renewed: boolean }> {
  const decision = renewalDue(installedValidity(dir), options.now());
  if (!decision.due) {
    options.log.debug('certificates kept', { reason: decision.reason });
    return { files: certificateFiles(dir), renewed: false };
  }
  const issued: IssuedCertificate[] = [];
  try {
    for (const kind of NODE_CERTIFICATE_KINDS) issued.push(await request(kind));
  } catch (error) {
    const installed = installedValidity(dir);
    if (!usableNow(installed, options.now())) throw error;
    const until = Math.min(...installed.map((v) => v?.notAfter ?? 0));
    options.log.warn('could not renew the certificates; keeping the ones held while they are valid', { reason: decision.reason, validUntil: new Date(until).toISOString(), error: describeError(error) });
    return { files: certificateFiles(dir), renewed: false };
  }
  const files = installCertificates(dir, issued);
  options.log.info('certificates renewed', { reason: decision.reason, notAfter: new Date(Math.min(...issued.map((c) => c.notAfter))).toISOString(), dir });
  return { files, renewed: true };
}
