/**
 * `npm run bench:tls [-- --size 200 --runs 5 --quick]`: what TLS with client certificates (#18) costs the
 * control plane, against plaintext, in the same run, on two one-member etcds of the same release and the
 * same data (one plain, one with client and peer TLS and --client-cert-auth, certificates from core/pki):
 * - cold: a new client's first RPC (connection, TLS handshake, Status), as a function's cold start or the
 *   lifecycle path's first call makes it; p50/p99 over 60 clients, alternating plain and TLS;
 * - warm: Status on one connected client, p50/p99 over 400 calls;
 * - snapshot: a backup's stream (Etcd3Cluster.snapshot, read to the end), MiB/s, median of N runs each;
 * - certificates: a node's key and CSR, and the issuer's signature, medians of 20;
 * - lifecycle path: the lifecycle function's removal of a terminating member (removeTerminatingMember, real
 *   etcd calls through a new client per event, as the handler makes them) on two 3-member clusters, plain
 *   and TLS, p50/p99: warm (a container that holds its certificate) and cold (plus the root certificate from
 *   the built issuer bundle, started fresh as a cold Lambda is, through the emulator's STS and Secrets
 *   Manager).
 * Both sides run in this one process (the client is what is measured), taking turns. Written to bench/TLS.md
 * and bench/tls.json (`--quick`: 50 MiB, fewer runs, written to the work dir). Not part of the tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { stsEndpoint } from '../core/aws/caller-identity.js';
import { RootCertificate } from '../core/aws/root-certificate.js';
import type { GroupInstance } from '../core/domain/instances.js';
import { Etcd3Cluster, type EtcdClientOptions } from '../core/etcd/cluster.js';
import { silentLog } from '../core/logger.js';
import { removeTerminatingMember } from '../core/use-cases/remove-terminating.js';
import { build } from '../scripts/build.mjs';
import { loopbackPeerSans } from '../testbed/agents.js';
import { startLambdaService } from '../testbed/lambda-service.js';
import { emulatorEnv, startMoto } from '../testbed/moto.js';
import { TestbedPki } from '../testbed/pki.js';
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

/** The CA and the certificates of the TLS members (one server and one peer certificate naming every `ips`), written under workDir; the client side's credentials. */
async function certificates(ips: readonly string[], prefix = ''): Promise<{ files: Record<string, string>; client: EtcdClientOptions['tls'] }> {
  const window = { notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000) };
  const ca = await createCertificateAuthority({ name: 'bench CA', ...window });
  const files: Record<string, string> = { ca: path.join(workDir, `${prefix}ca.crt`) };
  writeFileSync(files.ca as string, ca.certPem);
  for (const [name, names, serverAuth] of [['server', ips, true], ['peer', ips, true], ['root', [], false]] as const) {
    const { keyPem, csrPem } = await createKeyAndCsr({ name, ips: names, dnsNames: [] });
    const certPem = await issueCertificate({ ca, csr: await readCsr(csrPem), profile: { commonName: name, ips: names, dnsNames: [], serverAuth, clientAuth: true }, ...window });
    files[`${name}-cert`] = path.join(workDir, `${prefix}${name}.crt`);
    files[`${name}-key`] = path.join(workDir, `${prefix}${name}.key`);
    writeFileSync(files[`${name}-cert`] as string, certPem);
    writeFileSync(files[`${name}-key`] as string, keyPem, { mode: 0o600 });
  }
  const f = (k: string) => readFileSync(files[k] as string);
  return { files, client: () => ({ caPem: f('ca'), certPem: f('root-cert'), keyPem: f('root-key') }) };
}

/** One member of a cluster of `members` (name → IP); returns its client URL. */
function startEtcd(name: string, ip: string, tls: Record<string, string> | undefined, members: Readonly<Record<string, string>> = { [name]: ip }): string {
  const scheme = tls ? 'https' : 'http';
  const client = `${scheme}://${ip}:2379`;
  const peer = `${scheme}://${ip}:2380`;
  const initialCluster = Object.entries(members).map(([n, i]) => `${n}=${scheme}://${i}:2380`).join(',');
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
      `--initial-cluster=${initialCluster}`,
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
    // On loopback a peer connects from 127.0.0.1, not from the address its certificate names (see testbed/agents.ts).
    { logFile: path.join(workDir, `${name}.log`), env: { PATH: process.env.PATH, ...loopbackPeerSans(etcdRelease().version) } },
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

const LIFECYCLE_WARM = values.quick ? 8 : 30;
const LIFECYCLE_COLD = values.quick ? 4 : 15;

interface LifecycleSide {
  readonly scheme: 'http' | 'https';
  readonly ips: readonly string[];
  /** The terminating instance's address: a learner on it is added before each event and removed by it. */
  readonly spareIp: string;
  readonly options: EtcdClientOptions;
}

/** Three members of one cluster, plain or TLS (client-certificate auth, peer TLS), each on its own address. */
async function lifecycleCluster(name: string, first: number, tls: boolean): Promise<LifecycleSide> {
  const ips = [first, first + 1, first + 2].map((n) => network.hostAddress(n));
  const members = Object.fromEntries(ips.map((ip, i) => [`${name}-${i}`, ip]));
  const certs = tls ? await certificates(ips, `${name}-`) : undefined;
  for (const [member, ip] of Object.entries(members)) startEtcd(member, ip, certs?.files, members);
  await Promise.all(ips.map((ip) => healthy(ip)));
  return { scheme: tls ? 'https' : 'http', ips, spareIp: network.hostAddress(first + 3), options: { dialTimeoutMs: 2000, callTimeoutMs: 10_000, ...(certs ? { tls: certs.client } : {}) } };
}

/**
 * One lifecycle event: a learner on the spare address is added (not timed), then the terminating instance's
 * member is removed the way the lifecycle function does it (a new client per event, listing, planning,
 * removing); the lifecycle action itself is a no-op here. Returns the removal's milliseconds.
 */
async function lifecycleEvent(side: LifecycleSide, options: EtcdClientOptions, event: number, beforeEtcd?: () => Promise<void>): Promise<number> {
  const urls = side.ips.map((ip) => `${side.scheme}://${ip}:2379`);
  const admin = new Etcd3Cluster(urls, options);
  try {
    await waitFor('the spare learner to be added', () => admin.addLearner(`${side.scheme}://${side.spareIp}:2380`).then(() => true, () => false), { timeoutMs: 30_000, intervalMs: 200 });
  } finally {
    admin.close();
  }
  const instances: GroupInstance[] = [...side.ips, side.spareIp].map((ip, i) => ({
    instanceId: i === side.ips.length ? 'i-spare' : `i-${i}`,
    lifecycleState: i === side.ips.length ? 'Terminating:Wait' : 'InService',
    healthStatus: 'Healthy',
    availabilityZone: 'a',
    privateIp: ip,
  }));
  const t0 = process.hrtime.bigint();
  const outcome = await removeTerminatingMember(
    { groupName: 'bench', hookName: 'etcd-terminate', instanceId: 'i-spare', token: `bench-${event}`, time: undefined },
    {
      groupName: 'bench',
      inventory: { instancesOf: () => Promise.resolve(instances), groupOf: () => Promise.resolve('bench'), instanceFacts: () => Promise.resolve(new Map()) },
      openCluster: (endpoints) => new Etcd3Cluster(endpoints, options),
      lifecycle: { complete: () => Promise.resolve('completed'), heartbeat: () => Promise.resolve() },
      clientPort: 2379,
      scheme: side.scheme,
      endpoints: undefined,
      finalBackup: undefined,
      log: silentLog,
      sleep: (delay) => new Promise((resolve) => setTimeout(resolve, delay)),
      beforeEtcd,
    },
  );
  const elapsed = ms(t0);
  if (outcome.kind !== 'completed' || outcome.removal !== 'removed') throw new Error(`the lifecycle event removed nothing: ${JSON.stringify(outcome)}`);
  return elapsed;
}

/** The lifecycle path's figures: warm plain and TLS, cold TLS with the root certificate asked of the issuer. */
async function lifecyclePath(): Promise<{ warm: { plain: number[]; tls: number[] }; cold: { tls: number[]; certificate: number[] } }> {
  const plain = await lifecycleCluster('life-plain', 10, false);
  const tls = await lifecycleCluster('life-tls', 20, true);
  const moto = await startMoto(processes, workDir);
  Object.assign(process.env, emulatorEnv(moto.endpoint));
  const built = await build({ outDir: path.join(workDir, 'dist'), quiet: true });
  const pki = await TestbedPki.create(`bench-tls-${Date.now()}`, 'bench');
  const service = await startLambdaService({ [pki.issuerFunction]: { bundle: built.functions.issuer ?? '', env: () => pki.issuerEnv({}) } });
  try {
    const control = await pki.functionEnv('lifecycle', service.endpoint);
    const region = process.env.AWS_REGION ?? 'us-east-1';
    const credentials = { accessKeyId: control.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: control.AWS_SECRET_ACCESS_KEY ?? '', sessionToken: control.AWS_SESSION_TOKEN };
    const newRoot = () =>
      new RootCertificate(
        { lambda: new LambdaClient({ endpoint: service.endpoint }), functionName: pki.issuerFunction, region, stsEndpoint: stsEndpoint(region), credentials: () => Promise.resolve(credentials) },
        silentLog,
      );
    // The TLS side's clients use the issuer's root certificate, as the function does (the members trust the
    // bench's own CA, so the warm side keeps the bench's root certificate: what is measured is the same handshake).
    const warm = { plain: [] as number[], tls: [] as number[] };
    for (let i = 0; i < LIFECYCLE_WARM; i += 1) {
      warm.plain.push(await lifecycleEvent(plain, plain.options, i));
      warm.tls.push(await lifecycleEvent(tls, tls.options, i));
    }
    say(`lifecycle path, warm p50: plain ${percentile(warm.plain, 50).toFixed(1)} ms, TLS ${percentile(warm.tls, 50).toFixed(1)} ms`);
    const cold = { tls: [] as number[], certificate: [] as number[] };
    for (let i = 0; i < LIFECYCLE_COLD; i += 1) {
      const root = newRoot();
      let certificateMs = 0;
      const total = await lifecycleEvent(tls, tls.options, LIFECYCLE_WARM + i, async () => {
        const t0 = process.hrtime.bigint();
        await root.ready();
        certificateMs = ms(t0);
      });
      cold.tls.push(total);
      cold.certificate.push(certificateMs);
    }
    say(`lifecycle path, cold TLS p50: ${percentile(cold.tls, 50).toFixed(1)} ms, of which the root certificate ${percentile(cold.certificate, 50).toFixed(1)} ms`);
    return { warm, cold };
  } finally {
    await service.close();
  }
}

async function main(): Promise<void> {
  say(`TLS against plaintext on etcd ${etcdRelease().version}: ${sizeMiB} MiB of data, ${runs} snapshot run(s) per side, ${COLD} cold clients, ${WARM} warm calls; logs in ${workDir}`);
  const plainIp = network.hostAddress(1);
  const tlsIp = network.hostAddress(2);
  const certs = await certificates([tlsIp]);
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

  say('lifecycle path: two 3-member clusters, the emulator and the issuer…');
  const life = await lifecyclePath();
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
    lifecycleMs: {
      warm: { plain: pct(life.warm.plain), tls: pct(life.warm.tls), samples: LIFECYCLE_WARM },
      cold: { tls: pct(life.cold.tls), rootCertificate: pct(life.cold.certificate), samples: LIFECYCLE_COLD },
    },
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
    '',
    '## The lifecycle path',
    '',
    'The lifecycle function\'s removal of a terminating member (`removeTerminatingMember`: a new client per event, the',
    'member list, the plan, the removal of the member), on two 3-member clusters of the same release, plain and TLS,',
    'taking turns; the learner it removes is added before each event, untimed. *Warm* is a container that holds its',
    'certificate; *cold* adds the root certificate asked of the built issuer bundle, started fresh for each request',
    '(a cold issuer), through the emulator\'s STS and Secrets Manager. (The members trust the bench\'s CA, so the',
    'removal itself presents the bench\'s root certificate: the same handshake.) The bundle\'s own module',
    'initialisation is in bench/RESULTS.md ("lifecycle cold").',
    '',
    '| figure | plaintext | TLS | ratio |',
    '|---|---|---|---|',
    `| warm, p50 (${LIFECYCLE_WARM} events each) | ${results.lifecycleMs.warm.plain.p50.toFixed(1)} ms | ${results.lifecycleMs.warm.tls.p50.toFixed(1)} ms | ${ratio(results.lifecycleMs.warm.tls.p50, results.lifecycleMs.warm.plain.p50)} |`,
    `| warm, p99 | ${results.lifecycleMs.warm.plain.p99.toFixed(1)} ms | ${results.lifecycleMs.warm.tls.p99.toFixed(1)} ms | ${ratio(results.lifecycleMs.warm.tls.p99, results.lifecycleMs.warm.plain.p99)} |`,
    `| cold, p50 (${LIFECYCLE_COLD} events) | (as warm) | ${results.lifecycleMs.cold.tls.p50.toFixed(1)} ms | ${ratio(results.lifecycleMs.cold.tls.p50, results.lifecycleMs.warm.plain.p50)} |`,
    `| cold, p99 | (as warm) | ${results.lifecycleMs.cold.tls.p99.toFixed(1)} ms | ${ratio(results.lifecycleMs.cold.tls.p99, results.lifecycleMs.warm.plain.p99)} |`,
    `| of which the root certificate, p50 / p99 | | ${results.lifecycleMs.cold.rootCertificate.p50.toFixed(1)} / ${results.lifecycleMs.cold.rootCertificate.p99.toFixed(1)} ms | |`,
    '',
    'Not measured here: the issuer round trip on AWS (Lambda invoke, STS, Secrets Manager latencies); here it is',
    'the emulator\'s, plus a fresh node process for the issuer. A function asks once per container (12 hours).',
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
