/**
 * `npm run bench [-- --quick]`: performance figures of this machine, written to bench/RESULTS.md and
 * bench/results.json (a --quick run writes to .testbed/bench-quick/ instead). Every figure is the median of several runs with min and max; comparisons with etcd's
 * own tools alternate A and B in the same run and report the ratio of medians. Not part of the tests.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { AutoScalingClient, SetDesiredCapacityCommand } from '@aws-sdk/client-auto-scaling';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Etcd3 } from 'etcd3';
import { S3SnapshotStore } from '../core/aws/s3-snapshot-store.js';
import { pairBackups, snapshotFolder } from '../core/domain/backups.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { EtcdRestoreTool } from '../core/etcd/restore-tool.js';
import { restoreBackup } from '../core/use-cases/restore.js';
import { build } from '../scripts/build.mjs';
import { AgentFleet } from '../testbed/agents.js';
import { startAutoScalingShim } from '../testbed/autoscaling-shim.js';
import { createSimulatedGroup, describeGroupInstances, terminateInGroup } from '../testbed/aws-world.js';
import { EtcdTestCluster } from '../testbed/etcd.js';
import { sqsEvent } from '../testbed/lambda.js';
import { emulatorEnv, startMoto } from '../testbed/moto.js';
import { claimLoopbackNetwork } from '../testbed/network.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT, etcdBin, etcdRelease, etcdctlBin } from '../testbed/tools.js';
import { waitFor } from '../testbed/wait.js';
import { figure, ms, percentile, type Figure } from './stats.js';

const run = promisify(execFile);
const quick = process.argv.includes('--quick');
const RUNS = quick ? 3 : 5;
const SIZES_MB = quick ? [16] : [50, 200, 1000];
const say = (line: string) => process.stdout.write(`${line}\n`);

const processes = new ProcessGroup();
const network = claimLoopbackNetwork();
const workDir = path.join(REPO_ROOT, '.testbed', `bench-${Date.now()}`);
mkdirSync(workDir, { recursive: true });
let counter = 0;
const unique = (p: string) => `${p}-${++counter}-${Date.now().toString(36)}`;

const results: Record<string, unknown> = {};

/** Waits (polling fast) until `name` is a voting member of the cluster that serves `endpoints`. */
async function votingMember(endpoints: readonly string[], name: string, count: number): Promise<void> {
  await waitFor(
    `${name} to be a voting member of a ${count}-member cluster`,
    async () => {
      const etcd = new Etcd3Cluster(endpoints, { dialTimeoutMs: 500, callTimeoutMs: 1000 });
      try {
        const { members } = await etcd.listMembers();
        return members.length === count && members.some((m) => m.name === name && !m.isLearner) && members.every((m) => !m.isLearner);
      } finally {
        etcd.close();
      }
    },
    { timeoutMs: 120_000, intervalMs: 50 },
  );
}

async function fill(endpoints: readonly string[], megabytes: number): Promise<void> {
  const client = new Etcd3({ hosts: [...endpoints] });
  const value = Buffer.alloc(64 * 1024);
  try {
    const count = Math.ceil((megabytes * 1024 * 1024) / value.length);
    for (let i = 0; i < count; i += 16) {
      await Promise.all(
        Array.from({ length: Math.min(16, count - i) }, (_, j) => {
          value.writeUInt32LE(i + j, 0);
          for (let k = 4; k < value.length; k += 4096) value.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, k);
          return client.put(`bench/${String(i + j).padStart(8, '0')}`).value(Buffer.from(value)).exec();
        }),
      );
    }
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  say(`bench (${quick ? 'quick' : 'full'}): ${RUNS} runs per figure; work dir ${path.relative(process.cwd(), workDir)}`);
  const moto = await startMoto(processes, workDir);
  Object.assign(process.env, emulatorEnv(moto.endpoint));
  const bucket = unique('bench').toLowerCase();
  const s3 = new S3Client({});
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const built = await build({ outDir: path.join(workDir, 'dist'), quiet: true });
  // The etcd release ETCD_AWS_ETCD_VERSION selects (the stack's default unless set), as the binary reports it.
  const { stdout: etcdVersion } = await run(etcdBin(), ['--version']);
  results.machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? '?',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    etcd: /etcd Version: (\S+)/.exec(etcdVersion)?.[1] ?? '?',
    mode: quick ? 'quick' : 'full',
    date: new Date().toISOString(),
  };

  // 1. Cold start: bundle size and module initialisation in a fresh node process.
  say('cold start…');
  const coldStart: Record<string, { sizeKiB: number; initMs: Figure }> = {};
  const fnEnv = { PATH: process.env.PATH, AWS_REGION: 'us-east-1', ETCD_ASG_NAME: 'bench', BACKUP_BUCKET: bucket, AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'x' };
  for (const [name, file] of Object.entries(built.functions)) {
    const samples: number[] = [];
    for (let i = 0; i < (quick ? 5 : 10); i++) {
      const script = `const t = performance.now(); await import(${JSON.stringify(pathToFileURL(file).href)}); process.stdout.write(String(performance.now() - t));`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { env: fnEnv });
      samples.push(Number(stdout));
    }
    coldStart[name] = { sizeKiB: Math.round(statSync(file).size / 1024), initMs: figure(samples) };
  }
  results.coldStart = coldStart;

  // 2. Bootstrap: agent start → voting member, founding and joining.
  say('bootstrap…');
  const founding: number[] = [];
  const joining: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const group = await createSimulatedGroup({ network, groupName: unique('boot'), size: 1 });
    const fleet = new AgentFleet({ processes, workDir: path.join(workDir, unique('boot')), bundle: built.agent, bucket, awsEndpoint: moto.endpoint });
    try {
      const first = group.instances[0]!;
      let t = process.hrtime.bigint();
      await fleet.start(first);
      await votingMember([`http://${first.privateIp}:2379`], first.instanceId, 1);
      founding.push(ms(t));
      await new AutoScalingClient({}).send(new SetDesiredCapacityCommand({ AutoScalingGroupName: group.groupName, DesiredCapacity: 2 }));
      const second = (await describeGroupInstances(group.groupName)).find((i) => i.instanceId !== first.instanceId)!;
      t = process.hrtime.bigint();
      await fleet.start(second);
      await votingMember([`http://${first.privateIp}:2379`], second.instanceId, 2);
      joining.push(ms(t));
    } finally {
      await fleet.closeAll();
    }
  }
  results.bootstrap = { foundingMs: figure(founding), joiningMs: figure(joining) };

  // 3. Lifecycle: message → member removed → lifecycle completed, warm handler, one process.
  say('lifecycle…');
  {
    const group = await createSimulatedGroup({ network, groupName: unique('life'), size: 4 });
    const [a, b, c, spare] = group.instances as [typeof group.instances[number], typeof group.instances[number], typeof group.instances[number], typeof group.instances[number]];
    const etcd = await EtcdTestCluster.start({ nodes: [a, b, c].map((i) => ({ name: i.instanceId, ip: i.privateIp })), workDir: path.join(workDir, unique('life')), processes });
    const shim = await startAutoScalingShim({ upstream: moto.endpoint });
    Object.assign(process.env, { AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint, ETCD_ASG_NAME: group.groupName, POWERTOOLS_LOG_LEVEL: 'ERROR', POWERTOOLS_METRICS_DISABLED: 'true' });
    const { handler } = (await import(pathToFileURL(built.functions.lifecycle!).href)) as { handler: (e: unknown, c: unknown) => Promise<{ batchItemFailures: unknown[] }> };
    const context = { functionName: 'bench', awsRequestId: 'r', getRemainingTimeInMillis: () => 60_000 };
    const admin = new Etcd3Cluster(etcd.clientUrls(), { dialTimeoutMs: 1000, callTimeoutMs: 5000 });
    const latencies: number[] = [];
    const events = quick ? 10 : 50;
    try {
      for (let i = 0; i < events + 2; i++) {
        await waitFor('a learner add to be accepted', () => admin.addLearner(`http://${spare.privateIp}:2380`).then(() => true), { timeoutMs: 30_000, intervalMs: 200 });
        const body = JSON.stringify({
          LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
          AutoScalingGroupName: group.groupName,
          LifecycleHookName: 'etcd-terminate',
          EC2InstanceId: spare.instanceId,
          LifecycleActionToken: `bench-${i}`,
        });
        const t = process.hrtime.bigint();
        const out = await handler(sqsEvent([body]), context);
        const elapsed = ms(t);
        if (out.batchItemFailures.length > 0) throw new Error('lifecycle handler failed a record');
        if (i >= 2) latencies.push(elapsed); // the first two warm the handler up
      }
    } finally {
      admin.close();
      await shim.close();
      delete process.env.AWS_ENDPOINT_URL_AUTO_SCALING;
      await etcd.teardown();
    }
    results.lifecycle = { events: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), minMs: Math.min(...latencies), maxMs: Math.max(...latencies) };
  }

  // 4 + 5. Backup and restore against etcd's own tools, per database size.
  const backup: Record<string, unknown> = {};
  const restore: Record<string, unknown> = {};
  for (const mb of SIZES_MB) {
    say(`backup and restore, ${mb} MB…`);
    const group = await createSimulatedGroup({ network, groupName: unique(`db${mb}`), size: 3 });
    const etcd = await EtcdTestCluster.start({ nodes: group.instances.map((i) => ({ name: i.instanceId, ip: i.privateIp })), workDir: path.join(workDir, unique('db')), processes });
    try {
      await fill(etcd.clientUrls(), mb);
      const env = { ...process.env, ETCD_ASG_NAME: group.groupName, BACKUP_BUCKET: bucket, POWERTOOLS_LOG_LEVEL: 'ERROR', BACKUP_KEEP_LAST: '3', BACKUP_KEEP_HOURLY_HOURS: '0', BACKUP_KEEP_DAILY_DAYS: '0' };
      const ours: number[] = [];
      const theirs: number[] = [];
      const rss: number[] = [];
      let dbBytes = 0;
      for (let r = 0; r < RUNS; r++) {
        const script = `const m = await import(${JSON.stringify(pathToFileURL(built.functions.backup!).href)});
          const t = performance.now(); const s = await m.handler({ force: true }, { awsRequestId: 'b', functionName: 'bench', getRemainingTimeInMillis: () => 900000 });
          process.stdout.write('\\nBENCH ' + JSON.stringify({ ms: performance.now() - t, size: s.size, maxRssKiB: process.resourceUsage().maxRSS }) + '\\n');`;
        const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { env, maxBuffer: 64 * 1024 * 1024 });
        const line = JSON.parse(stdout.split('\n').find((l) => l.startsWith('BENCH '))!.slice(6)) as { ms: number; size: number; maxRssKiB: number };
        ours.push(line.ms);
        rss.push(line.maxRssKiB / 1024);
        dbBytes = line.size;
        const file = path.join(workDir, 'etcdctl-snapshot.db');
        const t = process.hrtime.bigint();
        await run(etcdctlBin(), ['--endpoints', etcd.clientUrls()[0]!, 'snapshot', 'save', file], { env: { PATH: process.env.PATH, ETCDCTL_API: '3' } });
        theirs.push(ms(t));
        rmSync(file, { force: true });
      }
      const o = figure(ours);
      const e = figure(theirs);
      backup[`${mb}MB`] = { dbMiB: Math.round(dbBytes / 2 ** 20), handlerMs: o, etcdctlSaveMs: e, ratio: o.median / e.median, handlerPeakRssMiB: figure(rss) };

      // Restore: the agent's path (download + verify + restore) against etcdctl restore of the same file.
      const store = new S3SnapshotStore(s3, bucket);
      const newest = pairBackups(await store.list(snapshotFolder('', group.groupName))).backups[0]!;
      const tool = await EtcdRestoreTool.find(etcdRelease().binDir);
      const local = path.join(workDir, 'local.db');
      const { pipeline } = await import('node:stream/promises');
      const { createWriteStream } = await import('node:fs');
      await pipeline(await store.download(newest.snapshotKey), createWriteStream(local));
      const agentPath: number[] = [];
      const etcdctlOnly: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        const dir1 = path.join(workDir, unique('restore-agent'));
        let t = process.hrtime.bigint();
        await restoreBackup(newest, { name: 'r', peerUrl: 'http://127.0.0.1:2380', token: 't' }, { store, restorer: tool, dataDir: dir1, bumpRevision: undefined });
        agentPath.push(ms(t));
        rmSync(dir1, { recursive: true, force: true });
        const dir2 = path.join(workDir, unique('restore-etcdctl'));
        t = process.hrtime.bigint();
        await tool.restore(local, { name: 'r', peerUrl: 'http://127.0.0.1:2380', token: 't', dataDir: dir2, bumpRevision: undefined });
        etcdctlOnly.push(ms(t));
        rmSync(dir2, { recursive: true, force: true });
      }
      rmSync(local, { force: true });
      const ra = figure(agentPath);
      const rb = figure(etcdctlOnly);
      restore[`${mb}MB`] = { agentRestoreMs: ra, etcdctlRestoreMs: rb, ratio: ra.median / rb.median, tool: tool.tool };
    } finally {
      await etcd.teardown();
    }
  }
  results.backup = backup;
  results.restore = restore;

  // 6. Recovery after total loss: three new agents start → all voting and serving.
  say('total-loss recovery…');
  const recovery: Record<string, Figure> = {};
  for (const mb of quick ? [1] : [1, 200]) {
    const samples: number[] = [];
    for (let r = 0; r < (quick ? 1 : RUNS); r++) {
      const group = await createSimulatedGroup({ network, groupName: unique('loss'), size: 3 });
      const first = new AgentFleet({ processes, workDir: path.join(workDir, unique('loss')), bundle: built.agent, bucket, awsEndpoint: moto.endpoint });
      const second = new AgentFleet({ processes, workDir: path.join(workDir, unique('loss')), bundle: built.agent, bucket, awsEndpoint: moto.endpoint });
      try {
        await Promise.all(group.instances.map((i) => first.start(i)));
        const urls = group.instances.map((i) => `http://${i.privateIp}:2379`);
        for (const i of group.instances) await votingMember(urls, i.instanceId, 3);
        await fill(urls, mb);
        const env = { ...process.env, ETCD_ASG_NAME: group.groupName, BACKUP_BUCKET: bucket, POWERTOOLS_LOG_LEVEL: 'ERROR' };
        const script = `const m = await import(${JSON.stringify(pathToFileURL(built.functions.backup!).href)}); await m.handler({ force: true }, { awsRequestId: 'b', functionName: 'bench', getRemainingTimeInMillis: () => 900000 });`;
        await run(process.execPath, ['--input-type=module', '-e', script], { env, maxBuffer: 64 * 1024 * 1024 });
        await Promise.all(group.instances.map((i) => first.kill(i.instanceId)));
        const replacements = [];
        for (const i of group.instances) replacements.push((await terminateInGroup(group.groupName, i.instanceId, true))!);
        const t = process.hrtime.bigint();
        await Promise.all(replacements.map((i) => second.start(i)));
        const newUrls = replacements.map((i) => `http://${i.privateIp}:2379`);
        for (const i of replacements) await votingMember(newUrls, i.instanceId, 3);
        samples.push(ms(t));
      } finally {
        await first.closeAll();
        await second.closeAll();
      }
    }
    recovery[`${mb}MB`] = figure(samples);
  }
  results.totalLossRecoveryMs = recovery;
  results.durationSeconds = Math.round((Date.now() - started) / 1000);
}

function fmt(f: Figure, unit = 'ms'): string {
  const n = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  return `${n(f.median)} ${unit} (${n(f.min)}–${n(f.max)}, n=${f.runs})`;
}

function report(): string {
  const m = results.machine as Record<string, unknown>;
  const lines = [
    '# Benchmark results',
    '',
    `Generated by \`npm run bench${quick ? ' -- --quick' : ''}\` on ${String(m.date)}: ${String(m.cpus)} CPUs (${String(m.cpuModel)}), ${String(m.memoryGiB)} GiB, etcd ${String(m.etcd)}, Node ${String(m.node)}, AWS emulated by moto on loopback. Medians with (min–max, runs).`,
    '',
    '## Backup: handler streaming to S3 vs `etcdctl snapshot save` to local disk',
    '',
    '| database | handler | etcdctl snapshot save | ratio | handler peak RSS |',
    '|---|---|---|---|---|',
  ];
  for (const [size, v] of Object.entries(results.backup as Record<string, { dbMiB: number; handlerMs: Figure; etcdctlSaveMs: Figure; ratio: number; handlerPeakRssMiB: Figure }>)) {
    lines.push(`| ${size} (${v.dbMiB} MiB) | ${fmt(v.handlerMs)} | ${fmt(v.etcdctlSaveMs)} | ${v.ratio.toFixed(2)} | ${fmt(v.handlerPeakRssMiB, 'MiB')} |`);
  }
  lines.push('', '## Restore: agent (download + verify + restore) vs `etcdutl snapshot restore` of the same file', '', '| database | agent | etcd tool alone | ratio |', '|---|---|---|---|');
  for (const [size, v] of Object.entries(results.restore as Record<string, { agentRestoreMs: Figure; etcdctlRestoreMs: Figure; ratio: number; tool: string }>)) {
    lines.push(`| ${size} | ${fmt(v.agentRestoreMs)} | ${fmt(v.etcdctlRestoreMs)} (${v.tool}) | ${v.ratio.toFixed(2)} |`);
  }
  const l = results.lifecycle as { events: number; p50Ms: number; p99Ms: number; minMs: number; maxMs: number };
  const b = results.bootstrap as { foundingMs: Figure; joiningMs: Figure };
  lines.push(
    '',
    '## Lifecycle handler (warm): message → member removed → lifecycle completed',
    '',
    `p50 ${l.p50Ms.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(1)} ms over ${l.events} events (min ${l.minMs.toFixed(1)}, max ${l.maxMs.toFixed(1)}).`,
    '',
    '## Bootstrap: agent start → voting member',
    '',
    `| founding node | joining node |`,
    '|---|---|',
    `| ${fmt(b.foundingMs)} | ${fmt(b.joiningMs)} |`,
    '',
    '## Recovery after total loss: three new agents start → all three voting (restore included)',
    '',
    '| database | time |',
    '|---|---|',
  );
  for (const [size, f] of Object.entries(results.totalLossRecoveryMs as Record<string, Figure>)) lines.push(`| ${size} | ${fmt(f)} |`);
  lines.push('', '## Cold start: bundle size and module initialisation (fresh node process)', '', '| bundle | size | init |', '|---|---|---|');
  for (const [name, v] of Object.entries(results.coldStart as Record<string, { sizeKiB: number; initMs: Figure }>)) lines.push(`| ${name} | ${v.sizeKiB} KiB | ${fmt(v.initMs)} |`);
  lines.push('', `Total bench time: ${String(results.durationSeconds)} s. Raw figures: [results.json](results.json).`, '');
  return lines.join('\n');
}

void main()
  .then(() => {
    // A quick run is a check, not the record: it leaves bench/RESULTS.md to the full run.
    const outDir = quick ? path.join(REPO_ROOT, '.testbed', 'bench-quick') : path.join(REPO_ROOT, 'bench');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(path.join(outDir, 'RESULTS.md'), report());
    say(report());
    return 0;
  })
  .catch((error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    return 1;
  })
  .then(async (code) => {
    await processes.stopAll(3000);
    network.release();
    rmSync(workDir, { recursive: true, force: true });
    process.exit(code);
  });
