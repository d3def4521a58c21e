/**
 * `npm run bench:defrag [-- --sizes 200,1000 --runs N]`: what a defragmentation costs on a 3-member cluster
 * whose database is half free pages (written, then every other key deleted and compacted), for each size in
 * MiB: how long etcd takes to defragment a follower and the leader, and the latency of a client's writes
 * (one at a time, through every endpoint, as behind the load balancer) while it runs, against the same
 * client before it. Medians over N rounds (default 3; the database is fragmented again for each). Written
 * to bench/DEFRAG.md and bench/defrag.json. Not part of the tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { EtcdTestCluster } from '../testbed/etcd.js';
import { claimLoopbackNetwork } from '../testbed/network.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT, etcdRelease } from '../testbed/tools.js';
import { figure, ms, percentile, type Figure } from './stats.js';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '200,1000' }, runs: { type: 'string', default: '3' } } });
const sizes = values.sizes.split(',').map(Number);
const runs = Number(values.runs);
if (sizes.some((s) => !Number.isInteger(s) || s < 10) || !Number.isInteger(runs) || runs < 1) {
  throw new Error(`--sizes takes MiB as integers of 10 or more (got ${values.sizes}); --runs a positive integer (got ${values.runs})`);
}
const say = (line: string) => process.stdout.write(`${line}\n`);
const processes = new ProcessGroup();
const network = claimLoopbackNetwork();
const workDir = path.join(REPO_ROOT, '.testbed', `bench-defrag-${Date.now()}`);
mkdirSync(workDir, { recursive: true });
const MiB = 1024 ** 2;
const VALUE = 64 * 1024;

interface Sample {
  defragMs: number;
  writeP50Ms: number;
  writeP99Ms: number;
  writeMaxMs: number;
}
interface Row {
  readonly sizeMiB: number;
  readonly role: 'follower' | 'leader';
  readonly dbBytes: Figure;
  readonly defragMs: Figure;
  readonly writeP50Ms: Figure;
  readonly writeP99Ms: Figure;
  readonly writeMaxMs: Figure;
  readonly baselineP50Ms: Figure;
  readonly baselineP99Ms: Figure;
}

/** Writes `bytes` of 64 KiB values under distinct keys, 16 at a time, then deletes every other key and compacts. */
async function fragment(client: Etcd3, etcd: Etcd3Cluster, endpoint: string, bytes: number): Promise<void> {
  const keys = Math.ceil(bytes / VALUE);
  const value = randomBytes(VALUE / 2).toString('hex');
  for (let k = 0; k < keys; k += 16) {
    await Promise.all(Array.from({ length: Math.min(16, keys - k) }, (_, i) => client.put(`/bench/${String(k + i).padStart(8, '0')}`).value(value)));
  }
  for (let k = 0; k < keys; k += 32) {
    await Promise.all(Array.from({ length: Math.min(16, Math.ceil((keys - k) / 2)) }, (_, i) => client.delete().key(`/bench/${String(k + 2 * i).padStart(8, '0')}`)));
  }
  await etcd.compact((await etcd.status(endpoint)).revision, 600_000);
  // A member shows the pages a compaction freed after its next write transaction.
  for (let i = 0; i < 5; i += 1) await client.put('/bench/tick').value(String(i));
}

/** One write at a time until `stop` resolves; the latency of each. */
async function writer(client: Etcd3, stop: Promise<unknown>): Promise<number[]> {
  const state = { done: false };
  void stop.then(() => (state.done = true));
  const latencies: number[] = [];
  for (let i = 0; !state.done; i += 1) {
    const t0 = process.hrtime.bigint();
    await client.put('/bench/writer').value(String(i));
    latencies.push(ms(t0));
  }
  return latencies;
}

async function measure(sizeMiB: number, run: number): Promise<{ dbBytes: number; baseline: number[]; follower: Sample; leader: Sample }> {
  const nodes = [1, 2, 3].map((i) => ({ name: `m${i}`, ip: network.hostAddress(10 * run + i + 20 * sizes.indexOf(sizeMiB)) }));
  const cluster = await EtcdTestCluster.start({ nodes, workDir: path.join(workDir, `${sizeMiB}-${run}`), processes, extraFlags: [`--quota-backend-bytes=${8 * 1024 * MiB}`] });
  const urls = cluster.clientUrls();
  const client = new Etcd3({ hosts: [...urls] });
  const etcd = new Etcd3Cluster(urls, { dialTimeoutMs: 2000, callTimeoutMs: 600_000 });
  try {
    await fragment(client, etcd, urls[0] as string, sizeMiB * MiB);
    const statuses = await Promise.all(urls.map((u) => etcd.status(u)));
    const leader = statuses.find((s) => s.leaderId === s.memberId);
    const follower = statuses.find((s) => s.leaderId !== s.memberId);
    if (!leader || !follower) throw new Error('no leader');
    const baseline = await writer(client, new Promise((r) => setTimeout(r, 3000)));
    const one = async (endpoint: string): Promise<Sample> => {
      const t0 = process.hrtime.bigint();
      const defrag = etcd.defragment(endpoint, 600_000).then(() => ms(t0));
      const latencies = await writer(client, defrag);
      return { defragMs: await defrag, writeP50Ms: percentile(latencies, 50), writeP99Ms: percentile(latencies, 99), writeMaxMs: Math.max(...latencies) };
    };
    const f = await one(follower.endpoint);
    const l = await one(leader.endpoint);
    return { dbBytes: leader.dbSize, baseline, follower: f, leader: l };
  } finally {
    client.close();
    etcd.close();
    await processes.stopAll(5000);
  }
}

async function main(): Promise<void> {
  say(`defragmentation on etcd ${etcdRelease().version}, 3 members, half of each database free: sizes ${sizes.join(', ')} MiB, ${runs} round(s) each; logs in ${workDir}`);
  const rows: Row[] = [];
  for (const size of sizes) {
    const results = [];
    for (let r = 0; r < runs; r += 1) {
      say(`${size} MiB, round ${r + 1}/${runs}: writing and fragmenting…`);
      const m = await measure(size, r);
      say(
        `  db ${(m.dbBytes / MiB).toFixed(0)} MiB; follower ${(m.follower.defragMs / 1000).toFixed(2)}s (writes p99 ${m.follower.writeP99Ms.toFixed(1)} ms, max ${m.follower.writeMaxMs.toFixed(0)} ms); ` +
          `leader ${(m.leader.defragMs / 1000).toFixed(2)}s (writes p99 ${m.leader.writeP99Ms.toFixed(1)} ms, max ${m.leader.writeMaxMs.toFixed(0)} ms); baseline p99 ${percentile(m.baseline, 99).toFixed(1)} ms`,
      );
      results.push(m);
    }
    for (const role of ['follower', 'leader'] as const) {
      rows.push({
        sizeMiB: size,
        role,
        dbBytes: figure(results.map((m) => m.dbBytes)),
        defragMs: figure(results.map((m) => m[role].defragMs)),
        writeP50Ms: figure(results.map((m) => m[role].writeP50Ms)),
        writeP99Ms: figure(results.map((m) => m[role].writeP99Ms)),
        writeMaxMs: figure(results.map((m) => m[role].writeMaxMs)),
        baselineP50Ms: figure(results.map((m) => percentile(m.baseline, 50))),
        baselineP99Ms: figure(results.map((m) => percentile(m.baseline, 99))),
      });
    }
  }
  const f = (x: Figure, d = 1) => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
  const md = [
    '# Defragmentation: its time and what a client sees meanwhile',
    '',
    `\`npm run bench:defrag -- --sizes ${sizes.join(',')} --runs ${runs}\` on ${new Date().toISOString().slice(0, 10)}, etcd ${etcdRelease().version}, 3 members on loopback, this machine (2 cores).`,
    'Each database: 64 KiB values written under distinct keys, every other key deleted, compacted (half the file free pages).',
    'A client writes one small key at a time through every endpoint while one member defragments; baseline: the same client just before. Medians (min–max) over the rounds.',
    '',
    '| Database | Member | File before | Defragmentation | Writes p50 during | p99 during | Longest write during | Baseline p50 | Baseline p99 |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.sizeMiB} MiB | ${r.role} | ${(r.dbBytes.median / MiB).toFixed(0)} MiB | ${f({ ...r.defragMs, median: r.defragMs.median / 1000, min: r.defragMs.min / 1000, max: r.defragMs.max / 1000 }, 2)} s | ${f(r.writeP50Ms)} ms | ${f(r.writeP99Ms)} ms | ${f(r.writeMaxMs, 0)} ms | ${f(r.baselineP50Ms)} ms | ${f(r.baselineP99Ms)} ms |`,
    ),
    '',
    'Reading it: etcd blocks a member\'s reads and writes while it rewrites its file. The client sends one write at a time, to each',
    'endpoint in turn (as clients behind the load balancer are spread over the members), so a write that lands on the member being',
    'defragmented waits for the end of it: the longest write is the whole defragmentation, for a follower as for the leader. A client',
    'connected to that member through the load balancer waits as long. That is why reconcile takes one member per run, only while every',
    'other member answers, and the leader last, after its leadership moved.',
    '',
  ].join('\n');
  writeFileSync(path.join(REPO_ROOT, 'bench', 'DEFRAG.md'), md);
  writeFileSync(path.join(REPO_ROOT, 'bench', 'defrag.json'), `${JSON.stringify({ measured: new Date().toISOString(), etcd: etcdRelease().version, rows }, null, 2)}\n`);
  say('wrote bench/DEFRAG.md and bench/defrag.json');
}

void main()
  .then(
    () => 0,
    (error: unknown) => {
      process.stderr.write(`bench:defrag: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n(logs kept in ${workDir})\n`);
      return 1;
    },
  )
  .then(async (code) => {
    await processes.stopAll(5000);
    network.release();
    if (code === 0) rmSync(workDir, { recursive: true, force: true });
    process.exit(code);
  });
