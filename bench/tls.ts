/**
 * `npm run bench:tls [-- --size 200 --runs 5 --quick]`: what TLS with client certificates (#18) costs the
 * control plane, against plaintext, in the same run, on two one-member etcds of the same release and the
 * same data (one plain, one with client and peer TLS and --client-cert-auth, certificates from core/pki):
 * - cold: a new client's first RPC (connection, TLS handshake, Status), as a function's cold start or the
 *   lifecycle path's first call makes it; p50/p99 over 60 clients, alternating plain and TLS;
 * - warm: Status on one connected client, p50/p99 over 400 calls;
 * - snapshot: a backup's stream (Etcd3Cluster.snapshot, read to the end), MiB/s, median of N runs each;
 * - certificates: a node's key and CSR, and the issuer's signature, medians of 20.
 * Both sides run in this one process (the client is what is measured), taking turns. Written to bench/TLS.md
 * and bench/tls.json (`--quick`: 50 MiB, fewer runs, written to the work dir). Not part of the tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { Etcd3Cluster, type EtcdClientOptions } from '../core/etcd/cluster.js';
import { createCertificateAuthority, createKeyAndCsr, issueCertificate, readCsr } from '../core/pki/x509.js';
import { claimLoopbackNetwork } from '../testbed/network.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT, etcdBin, etcdRelease } from '../testbed/tools.js';
import { waitFor } from '../testbed/wait.js';
import { figure, ms, percentile, type Figure } from './stats.js';

const { values } = parseArgs({ options: { size: { type: 'string' }, runs: { type: 'string' }, quick: { type: 'boolean', default: false } } });
const sizeMiB = Number(values.size ?? (values.quick ? '50' : '200'));
const runs = Number(values.runs ?? (values.quick ? '3' : '5'));
if (!Number.isInteger(sizeMiB) || sizeMiB < 1 || !Number.isInteger(runs) || runs < 1) {
  throw new Error(`--size takes MiB as a positive integer (got ${String(values.size)}); --runs a positive integer (got ${String(values.runs)})`);
}
const COLD = values.quick ? 30 : 60;
const WARM = values.quick ? 200 : 400;
const say = (line: string) => process.stdout.write(`${line}\n`);
const MiB = 1024 ** 2;
const processes = new ProcessGroup();
const network = claimLoopbackNetwork();
const workDir = path.join(REPO_ROOT, '.testbed', `bench-tls-${Date.now()}`);
mkdirSync(workDir, { recursive: true });

interface Side {
  readonly url: string;
  readonly options: EtcdClientOptions;
}

/** The CA and the certificates of the TLS member, written under workDir; the client side's credentials. */
async function certificates(ip: string): Promise<{ files: Record<string, string>; client: EtcdClientOptions['tls'] }> {
  const window = { notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000) };
  const ca = await createCertificateAuthority({ name: 'bench CA', ...window });
  const files: Record<string, string> = { ca: path.join(workDir, 'ca.crt') };
  writeFileSync(files.ca as string, ca.certPem);
  for (const [name, ips, serverAuth] of [['server', [ip], true], ['peer', [ip], true], ['root', [], false]] as const) {
    const { keyPem, csrPem } = await createKeyAndCsr({ name, ips, dnsNames: [] });
    const certPem = await issueCertificate({ ca, csr: await readCsr(csrPem), profile: { commonName: name, ips, dnsNames: [], serverAuth, clientAuth: true }, ...window });
    files[`${name}-cert`] = path.join(workDir, `${name}.crt`);
    files[`${name}-key`] = path.join(workDir, `${name}.key`);
    writeFileSync(files[`${name}-cert`] as string, certPem);
    writeFileSync(files[`${name}-key`] as string, keyPem, { mode: 0o600 });
  }
  const f = (k: string) => readFileSync(files[k] as string);
  return { files, client: () => ({ caPem: f('ca'), certPem: f('root-cert'), keyPem: f('root-key') }) };
}

function startEtcd(name: string, ip: string, tls: Record<string, string> | undefined): string {
  const scheme = tls ? 'https' : 'http';
  const client = `${scheme}://${ip}:2379`;
  const peer = `${scheme}://${ip}:2380`;
  processes.spawn(
    `etcd ${name}`,
    etcdBin(),
    [
      `--name=${name}`,
      `--data-dir=${path.join(workDir, `${name}.etcd`)}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${name}=${peer}`,
      `--listen-metrics-urls=http://${ip}:2381`,
      `--quota-backend-bytes=${8 * 1024 * MiB}`,
      ...(tls
        ? [
            `--cert-file=${tls['server-cert']}`,
            `--key-file=${tls['server-key']}`,
            `--trusted-ca-file=${tls.ca}`,
            '--client-cert-auth',
            `--peer-cert-file=${tls['peer-cert']}`,
            `--peer-key-file=${tls['peer-key']}`,
            `--peer-trusted-ca-file=${tls.ca}`,
            '--peer-client-cert-auth',
          ]
        : []),
      '--logger=zap',
      '--log-outputs=stderr',
    ],
    { logFile: path.join(workDir, `${name}.log`), env: { PATH: process.env.PATH } },
  );
  return client;
}

async function healthy(ip: string): Promise<void> {
  await waitFor(`etcd at ${ip} to report healthy`, async () => {
    const res = await fetch(`http://${ip}:2381/health`, { signal: AbortSignal.timeout(2000) });
    return ((await res.json()) as { health?: string }).health === 'true';
  });
}

/** The same data in both: `sizeMiB` of 64 KiB values, 16 writes at a time. */
async function fill(side: Side): Promise<void> {
  const client = rawClient(side);
  const value = randomBytes(32 * 1024).toString('hex');
  try {
    const keys = Math.ceil((sizeMiB * MiB) / (64 * 1024));
    for (let k = 0; k < keys; k += 16) {
      await Promise.all(Array.from({ length: Math.min(16, keys - k) }, (_, i) => client.put(`/bench/${String(k + i).padStart(8, '0')}`).value(value)));
    }
  } finally {
    client.close();
  }
}

async function coldStatus(side: Side): Promise<number> {
  const t0 = process.hrtime.bigint();
  const etcd = new Etcd3Cluster([side.url], side.options);
  try {
    await etcd.status(side.url);
    return ms(t0);
  } finally {
    etcd.close();
  }
}

/** One etcd3 client, connected once (Etcd3Cluster.status makes a client per call, so it is not used here). */
function rawClient(side: Side): Etcd3 {
  const tls = side.options.tls?.();
  return new Etcd3({ hosts: [side.url], ...(tls ? { credentials: { rootCertificate: tls.caPem, certChain: tls.certPem, privateKey: tls.keyPem } } : {}) });
}

async function warmStatus(side: Side, count: number): Promise<number[]> {
  const client = rawClient(side);
  try {
    await client.maintenance.status();
    const out: number[] = [];
    for (let i = 0; i < count; i += 1) {
      const t0 = process.hrtime.bigint();
      await client.maintenance.status();
      out.push(ms(t0));
    }
    return out;
  } finally {
    client.close();
  }
}

async function snapshotMiBps(side: Side): Promise<{ mibps: number; bytes: number }> {
  const etcd = new Etcd3Cluster([side.url], side.options);
  try {
    const t0 = process.hrtime.bigint();
    let bytes = 0;
    for await (const chunk of (await etcd.snapshot(side.url, 600_000)).stream) bytes += (chunk as Buffer).length;
    return { mibps: bytes / MiB / (ms(t0) / 1000), bytes };
  } finally {
    etcd.close();
  }
}

async function main(): Promise<void> {
  say(`TLS against plaintext on etcd ${etcdRelease().version}: ${sizeMiB} MiB of data, ${runs} snapshot run(s) per side, ${COLD} cold clients, ${WARM} warm calls; logs in ${workDir}`);
  const plainIp = network.hostAddress(1);
  const tlsIp = network.hostAddress(2);
  const certs = await certificates(tlsIp);
  const calls = { dialTimeoutMs: 2000, callTimeoutMs: 30_000 };
  const plain: Side = { url: startEtcd('plain', plainIp, undefined), options: calls };
  const tls: Side = { url: startEtcd('tls', tlsIp, certs.files), options: { ...calls, tls: certs.client } };
  await Promise.all([healthy(plainIp), healthy(tlsIp)]);
  say(`filling both with ${sizeMiB} MiB…`);
  await Promise.all([fill(plain), fill(tls)]);

  const cold = { plain: [] as number[], tls: [] as number[] };
  for (let i = 0; i < COLD; i += 1) {
    // Alternating, so drift in the machine's load falls on both sides alike.
    cold.plain.push(await coldStatus(plain));
    cold.tls.push(await coldStatus(tls));
  }
  say(`cold first RPC p50: plain ${percentile(cold.plain, 50).toFixed(2)} ms, TLS ${percentile(cold.tls, 50).toFixed(2)} ms`);
  const warm = { plain: await warmStatus(plain, WARM), tls: await warmStatus(tls, WARM) };
  say(`warm Status p50: plain ${percentile(warm.plain, 50).toFixed(3)} ms, TLS ${percentile(warm.tls, 50).toFixed(3)} ms`);
  const snap = { plain: [] as number[], tls: [] as number[] };
  let snapshotBytes = 0;
  for (let r = 0; r < runs; r += 1) {
    const p = await snapshotMiBps(plain);
    const t = await snapshotMiBps(tls);
    snap.plain.push(p.mibps);
    snap.tls.push(t.mibps);
    snapshotBytes = t.bytes;
    say(`snapshot run ${r + 1}/${runs}: plain ${p.mibps.toFixed(0)} MiB/s, TLS ${t.mibps.toFixed(0)} MiB/s`);
  }
  const keygen: number[] = [];
  const signing: number[] = [];
  const ca = await createCertificateAuthority({ name: 'bench CA', notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000) });
  for (let i = 0; i < 20; i += 1) {
    const t0 = process.hrtime.bigint();
    const { csrPem } = await createKeyAndCsr({ name: 'x', ips: [tlsIp], dnsNames: [] });
    keygen.push(ms(t0));
    const t1 = process.hrtime.bigint();
    await issueCertificate({ ca, csr: await readCsr(csrPem), profile: { commonName: 'etcd-peer', ips: [tlsIp], dnsNames: [], serverAuth: true, clientAuth: true }, notBefore: new Date(), notAfter: new Date(Date.now() + 3600_000) });
    signing.push(ms(t1));
  }

  const pct = (s: number[]) => ({ p50: percentile(s, 50), p99: percentile(s, 99) });
  const results = {
    etcd: etcdRelease().version,
    sizeMiB,
    snapshotBytes,
    coldMs: { plain: pct(cold.plain), tls: pct(cold.tls), samples: COLD },
    warmMs: { plain: pct(warm.plain), tls: pct(warm.tls), samples: WARM },
    snapshotMiBps: { plain: figure(snap.plain), tls: figure(snap.tls) },
    keyAndCsrMs: figure(keygen),
    issueMs: figure(signing),
  };
  const f = (x: Figure, d = 0) => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const md = [
    '# TLS with client certificates against plaintext',
    '',
    `\`npm run bench:tls${values.quick ? ' -- --quick' : ''}\` on this machine (2 cores), etcd ${results.etcd}, one member each, the same ${sizeMiB} MiB of data;`,
    'both sides in the same run and process, taking turns. ECDSA P-256 certificates from core/pki; the TLS member runs with',
    '`--client-cert-auth` and peer TLS, the client presents the root certificate. Ratios are TLS over plaintext.',
    'Each Etcd3Cluster call that names a member (Status, Snapshot, Defragment) opens its own connection: on the',
    'control plane\'s paths every such call pays the "new client" figure, not the "connected client" one.',
    '',
    '| figure | plaintext | TLS | ratio |',
    '|---|---|---|---|',
    `| new client, first RPC (connect, handshake, Status), p50 | ${results.coldMs.plain.p50.toFixed(2)} ms | ${results.coldMs.tls.p50.toFixed(2)} ms | ${ratio(results.coldMs.tls.p50, results.coldMs.plain.p50)} |`,
    `| new client, first RPC, p99 (${COLD} clients) | ${results.coldMs.plain.p99.toFixed(2)} ms | ${results.coldMs.tls.p99.toFixed(2)} ms | ${ratio(results.coldMs.tls.p99, results.coldMs.plain.p99)} |`,
    `| connected client, Status, p50 | ${results.warmMs.plain.p50.toFixed(3)} ms | ${results.warmMs.tls.p50.toFixed(3)} ms | ${ratio(results.warmMs.tls.p50, results.warmMs.plain.p50)} |`,
    `| connected client, Status, p99 (${WARM} calls) | ${results.warmMs.plain.p99.toFixed(3)} ms | ${results.warmMs.tls.p99.toFixed(3)} ms | ${ratio(results.warmMs.tls.p99, results.warmMs.plain.p99)} |`,
    `| snapshot stream, MiB/s, median (min–max) of ${runs} | ${f(results.snapshotMiBps.plain)} | ${f(results.snapshotMiBps.tls)} | ${ratio(results.snapshotMiBps.tls.median, results.snapshotMiBps.plain.median)} |`,
    '',
    `Certificates: a node's key and CSR take ${results.keyAndCsrMs.median.toFixed(1)} ms, the issuer's signature ${results.issueMs.median.toFixed(1)} ms (medians of 20, in process).`,
    'Not measured here: the issuer round trip a function or agent pays once per certificate (Lambda invoke, STS,',
    'Secrets Manager); the emulator would not show AWS latencies. A function asks once per container (12 hours).',
    '',
  ].join('\n');
  // A quick run checks that the bench works; only a full one replaces the record.
  const outDir = values.quick ? workDir : path.join(REPO_ROOT, 'bench');
  writeFileSync(path.join(outDir, 'TLS.md'), md);
  writeFileSync(path.join(outDir, 'tls.json'), `${JSON.stringify(results, null, 2)}\n`);
  say(md);
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`bench:tls failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await processes.stopAll(5000);
    network.release();
  });
