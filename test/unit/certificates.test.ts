import { lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../core/aws/issuer-client.js';
import { MIN_CERTIFICATE_CHECK_MS, nextCertificateCheckMs, renewalDue, usableNow, type CertificateKind, type Validity } from '../../core/domain/issuance.js';
import { createCertificateAuthority, createKeyAndCsr, issueCertificate, readCsr, type CertifiedKey } from '../../core/pki/x509.js';
import { ensureCertificates, installedValidity } from '../../node-agent/certificates.js';
import { recordingLog } from '../support/fixtures.js';

const DAY = 86_400_000;
const T = Date.parse('2026-11-28T00:00:00Z');
const week = (from: number): Validity => ({ notBefore: from, notAfter: from + 7 * DAY });

describe('renewalDue', () => {
  it.each<[string, Array<Validity | undefined>, number, boolean, string]>([
    ['fresh certificates', [week(T), week(T), week(T)], T + DAY, false, 'more than a third'],
    ['nothing installed yet', [], T, true, 'missing'],
    ['one of them missing', [week(T), undefined, week(T)], T + DAY, true, 'missing'],
    ['a third of the lifetime left', [week(T), week(T), week(T)], T + (14 * DAY) / 3, true, 'a third or less'],
    ['one renewed late still due', [week(T), week(T - 6 * DAY), week(T)], T, true, 'a third or less'],
    ['expired', [week(T), week(T), week(T)], T + 8 * DAY, true, 'expired'],
    ['not valid yet by this clock', [week(T + DAY), week(T), week(T)], T, true, 'valid only from'],
  ])('%s', (_why, installed, now, due, says) => {
    const out = renewalDue(installed, now);
    expect(out.due).toBe(due);
    expect(out.reason).toContain(says);
  });
});

describe('ensureCertificates', () => {
  let ca: CertifiedKey;
  const dirs: string[] = [];
  beforeAll(async () => {
    ca = await createCertificateAuthority({ name: 'ca', notBefore: new Date(T - DAY), notAfter: new Date(T + 365 * DAY) });
  });
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** A stand-in issuer: certificates valid for a week from `at`, counting its calls. */
  function issuer(at: () => number) {
    const calls: CertificateKind[] = [];
    const request = async (kind: CertificateKind): Promise<IssuedCertificate> => {
      calls.push(kind);
      const { keyPem, csrPem } = await createKeyAndCsr({ name: kind, ips: kind === 'client' ? [] : ['10.0.1.5'], dnsNames: [] });
      const v = week(at());
      const certificatePem = await issueCertificate({
        ca,
        csr: await readCsr(csrPem),
        profile: { commonName: kind, ips: kind === 'client' ? [] : ['10.0.1.5'], dnsNames: [], serverAuth: kind !== 'client', clientAuth: true },
        notBefore: new Date(v.notBefore),
        notAfter: new Date(v.notAfter),
      });
      return { kind, keyPem, certificatePem, peerCaPem: ca.certPem, clientCaPem: ca.certPem, ...v };
    };
    return { calls, request };
  }

  it('installs every kind at once behind one link, keys private, renews only when due, and keeps one previous generation', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-pki-'));
    dirs.push(dir);
    let now = T;
    const fake = issuer(() => now);
    const log = recordingLog();

    const first = await ensureCertificates(dir, fake.request, { now: () => now, log });
    expect(first.renewed).toBe(true);
    expect(fake.calls).toEqual(['peer', 'server', 'client']);
    expect(lstatSync(path.join(dir, 'current')).isSymbolicLink()).toBe(true);
    expect(statSync(first.files.cert.peer.keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(first.files.peerCaFile, 'utf8')).toBe(ca.certPem);
    expect(installedValidity(dir)).toEqual([week(T), week(T), week(T)].map((v) => ({ notBefore: v.notBefore, notAfter: v.notAfter })));

    now = T + 2 * DAY;
    expect((await ensureCertificates(dir, fake.request, { now: () => now, log })).renewed).toBe(false);
    expect(fake.calls).toHaveLength(3);

    now = T + 5 * DAY;
    const second = await ensureCertificates(dir, fake.request, { now: () => now, log });
    expect(second.renewed).toBe(true);
    const replaced = readlinkSync(path.join(dir, 'current'));
    now = T + 10 * DAY;
    await ensureCertificates(dir, fake.request, { now: () => now, log });
    // The newest and the one it replaced; the first generation is gone, and no staged link is left behind.
    const newest = readlinkSync(path.join(dir, 'current'));
    expect(newest).not.toBe(replaced);
    expect(readdirSync(dir).sort()).toEqual(['current', newest, replaced].sort());
    expect(log.lines.filter((l) => l.message === 'certificates renewed').map((l) => l.fields.reason)).toEqual([
      'a certificate is missing or unreadable',
      expect.stringContaining('a third or less'),
      expect.stringContaining('a third or less'),
    ]);
  });

  it('installs nothing when the issuer refuses one kind: keeps the certificates held while they are valid, and fails once they are not', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-pki-'));
    dirs.push(dir);
    const now = T;
    const fake = issuer(() => now);
    await ensureCertificates(dir, fake.request, { now: () => now, log: recordingLog() });
    const before = readlinkSync(path.join(dir, 'current'));
    const refusing = (kind: CertificateKind) => (kind === 'client' ? Promise.reject(new Error('refused')) : fake.request(kind));

    // Due (a day left of seven), the renewal fails, the held ones still work: etcd may start or keep serving.
    const log = recordingLog();
    const kept = await ensureCertificates(dir, refusing, { now: () => T + 6 * DAY, log });
    expect(kept.renewed).toBe(false);
    expect(readlinkSync(path.join(dir, 'current'))).toBe(before);
    const said = log.lines.find((l) => l.message === 'could not renew the certificates; keeping the ones held while they are valid');
    expect(said?.level).toBe('warn');
    expect(said?.fields).toMatchObject({ validUntil: new Date(T + 7 * DAY).toISOString(), error: 'refused' });

    // Expired: nothing usable is left, so the failure stands.
    await expect(ensureCertificates(dir, refusing, { now: () => T + 8 * DAY, log: recordingLog() })).rejects.toThrow('refused');
    expect(readlinkSync(path.join(dir, 'current'))).toBe(before);
  });
});

describe('usableNow', () => {
  it.each<[string, Array<Validity | undefined>, number, boolean]>([
    ['all valid', [week(T), week(T), week(T)], T + DAY, true],
    ['valid to the last millisecond', [week(T)], T + 7 * DAY - 1, true],
    ['one expired', [week(T), week(T - 7 * DAY), week(T)], T + DAY, false],
    ['one missing', [week(T), undefined], T + DAY, false],
    ['none installed', [], T, false],
    ['one not valid yet by this clock', [week(T + DAY), week(T)], T, false],
  ])('%s', (_why, installed, now, usable) => {
    expect(usableNow(installed, now)).toBe(usable);
  });
});

describe('nextCertificateCheckMs', () => {
  const TEN_MIN = 600_000;
  it.each<[string, Array<Validity | undefined>, number, number]>([
    ['days left: the regular check', [week(T), week(T), week(T)], T + DAY, TEN_MIN],
    ['20 minutes left: a quarter of it, so several retries before they run out', [week(T)], T + 7 * DAY - 20 * 60_000, 5 * 60_000],
    ['a minute left: never more often than the minimum', [week(T)], T + 7 * DAY - 60_000, MIN_CERTIFICATE_CHECK_MS],
    ['expired: the minimum', [week(T)], T + 8 * DAY, MIN_CERTIFICATE_CHECK_MS],
    ['one missing: the minimum', [week(T), undefined], T + DAY, MIN_CERTIFICATE_CHECK_MS],
    ['the first to expire counts', [week(T), week(T - 7 * DAY + 40 * 60_000)], T + 20 * 60_000, 5 * 60_000],
  ])('%s', (_why, installed, now, expected) => {
    expect(nextCertificateCheckMs(installed, now, TEN_MIN)).toBe(expected);
  });
});
