/**
 * `npm run bench [-- --quick] [--only cold,lifecycle,backup,bootstrap,recovery] [--sizes 50,200]`: figures of
 * this machine's performance, written to bench/RESULTS.md and bench/results.json (a quick or partial run writes to
 * .testbed/bench-quick/ instead: a check, not the record). Every figure is the median of several runs with
 * min and max; each comparison with what a user would run instead (etcd's tools, a save-then-upload script)
 * runs both sides in turn in the same run, each in a fresh process, and reports the ratio of medians.
 * Progress goes to stderr. Not part of the tests.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { AutoScalingClient, SetDesiredCapacityCommand } from '@aws-sdk/client-auto-scaling';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Etcd3 } from 'etcd3';
import { S3SnapshotStore } from '../core/aws/s3-snapshot-store.js';
import { pairBackups, snapshotFolder } from '../core/domain/backups.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { EtcdRestoreTool } from '../core/etcd/restore-tool.js';
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
import { CpuShare, MB_PER_VCPU } from './cpu-share.js';
import { Progress } from './progress.js';
import { figure, ms, percentile, type Figure } from './stats.js';

const run = promisify(execFile);
const SECTIONS = ['cold', 'bootstrap', 'lifecycle', 'backup', 'recovery'] as const;
const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string', default: SECTIONS.join(',') }, sizes: { type: 'string' } },
});
const quick = args.quick;
const only = new Set(args.only.split(','));
const unknown = [...only].filter((s) => !(SECTIONS as readonly string[]).includes(s));
if (unknown.length > 0) throw new Error(`--only takes sections among ${SECTIONS.join(', ')} (got ${unknown.join(', ')})`);
const RUNS = quick ? 3 : 5;
const SIZES_MB = args.sizes === undefined ? (quick ? [16] : [50, 200, 1000]) : args.sizes.split(',').map(Number);
if (SIZES_MB.some((s) => !Number.isInteger(s) || s < 1)) throw new Error(`--sizes takes database sizes in MB, integers of 1 or more (got ${args.sizes})`);
const partial = only.size < SECTIONS.length || args.sizes !== undefined;
/** Fresh processes per cold lifecycle figure: p99 of fewer than 20 says nothing. */
const COLD_LIFECYCLE_RUNS = quick ? 20 : 40;
/** Lambda memory sizes whose CPU share (memory / 1769 MB of one vCPU) the cold lifecycle path and a backup are measured with. */
const LAMBDA_MEMORY_MB = [256, 512, 1024, 1769];
const SIZED_RUNS = quick ? 3 : 10;
const SIZED_RUNS_BACKUP = quick ? 1 : 3;
/** The database size the backup is measured on at each Lambda memory size. */
const SIZED_BACKUP_MB = SIZES_MB.includes(200) ? 200 : SIZES_MB[0];
/** NODE_OPTIONS of the backup function in serverless.yml (the deploy test checks it there). */
const BACKUP_NODE_OPTIONS = '--enable-source-maps --max-semi-space-size=1';
const progress = new Progress();
/** A child process measured by the bench: a hung one is killed (by its PID, through execFile) after 15 minutes. */
const CHILD = { timeout: 15 * 60_000, killSignal: 'SIGKILL' as const, maxBuffer: 64 * 1024 * 1024 };
/** The numbers `fields` of the `BENCH {json}` line a probe or an invocation printed. */
function benchLine<K extends string>(stdout: string, fields: readonly K[]): Record<K, number> {
  const line = stdout.split('\n').find((l) => l.startsWith('BENCH '));
  if (!line) throw new Error(`the measured process printed no BENCH line:\n${stdout.slice(-2000)}`);
  const parsed = JSON.parse(line.slice(6)) as Record<string, unknown>;
  const missing = fields.filter((f) => typeof parsed[f] !== 'number');
  if (missing.length > 0) throw new Error(`the BENCH line lacks ${missing.join(', ')}: ${line}`);
  return parsed as Record<K, number>;
}
const probe = (name: string, probeArgs: readonly string[], env: NodeJS.ProcessEnv) =>
  run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'bench', 'probe.ts'), name, ...probeArgs], { ...CHILD, env, cwd: REPO_ROOT });

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

/** One backup (forced) by the built handler in a fresh process; with `share`, on that much CPU. */
async function backupHandler(env: NodeJS.ProcessEnv, share?: CpuShare): Promise<Record<'ms' | 'size' | 'maxRssKiB', number>> {
  const script = `const m = await import(${JSON.stringify(pathToFileURL(builtBackup).href)});
    const t = performance.now(); const s = await m.handler({ force: true }, { awsRequestId: 'b', functionName: 'bench', getRemainingTimeInMillis: () => 900000 });
    process.stdout.write('\\nBENCH ' + JSON.stringify({ ms: performance.now() - t, size: s.size, maxRssKiB: process.resourceUsage().maxRSS }) + '\\n');`;
  const [command, argv] = share ? share.wrap(process.execPath, ['--input-type=module', '-e', script]) : [process.execPath, ['--input-type=module', '-e', script]];
  const { stdout } = await run(command, argv, { ...CHILD, env: { ...env, NODE_OPTIONS: BACKUP_NODE_OPTIONS } });
  return benchLine(stdout, ['ms', 'size', 'maxRssKiB']);
}
let builtBackup = '';
let builtReconcile = '';

/** One scheduled reconcile run by the built handler in a fresh process, node start to result, on `share`'s CPU. */
async function reconcileCold(env: NodeJS.ProcessEnv, share: CpuShare): Promise<number> {
  const script = `const m = await import(${JSON.stringify(pathToFileURL(builtReconcile).href)});
    const r = await m.handler({}, { getRemainingTimeInMillis: () => 120000 });
    process.stdout.write('\\nBENCH ' + JSON.stringify({ ok: 1, result: r }) + '\\n'); process.exit(0);`;
  const [command, argv] = share.wrap(process.execPath, ['--input-type=module', '-e', script]);
  const t = process.hrtime.bigint();
  const { stdout } = await run(command, argv, { ...CHILD, env });
  const elapsed = ms(t);
  benchLine(stdout, ['ok']);
  return elapsed;
}

async function main(): Promise<void> {
  const started = Date.now();
  progress.step(`bench (${quick ? 'quick' : 'full'}${partial ? `, only ${[...only].join(', ')}` : ''}): ${RUNS} runs per figure; work dir ${path.relative(process.cwd(), workDir)}`);
  const moto = await startMoto(processes, workDir);
  Object.assign(process.env, emulatorEnv(moto.endpoint));
  const bucket = unique('bench').toLowerCase();
  const s3 = new S3Client({});
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const built = await build({ outDir: path.join(workDir, 'dist'), quiet: true });
  builtBackup = built.functions.backup!;
  builtReconcile = built.functions.reconcile!;
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
  // What Lambda runs the bundles with (serverless.yml): source maps on, for readable stack traces.
  const fnEnv = {
    PATH: process.env.PATH,
    NODE_OPTIONS: '--enable-source-maps',
    AWS_SDK_JS_SUPPRESS_NODE_VERSION_WARNING: '1',
    AWS_REGION: 'us-east-1',
    ETCD_ASG_NAME: 'bench',
    BACKUP_BUCKET: bucket,
    AWS_ACCESS_KEY_ID: 'x',
    AWS_SECRET_ACCESS_KEY: 'x',
  };

  // 1. Cold start: bundle size and module initialisation in a fresh node process.
  if (only.has('cold')) {
    progress.step('cold start: module initialisation of each bundle in fresh processes');
    const coldStart: Record<string, { sizeKiB: number; initMs: Figure }> = {};
    for (const [name, file] of Object.entries(built.functions)) {
      const samples: number[] = [];
      const n = quick ? 5 : 15;
      for (let i = 0; i < n; i++) {
        progress.update(`cold start: ${name} ${i + 1}/${n}`);
        const script = `const t = performance.now(); await import(${JSON.stringify(pathToFileURL(file).href)}); process.stdout.write('\\nBENCH ' + JSON.stringify({ ms: performance.now() - t }) + '\\n');`;
        const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { ...CHILD, env: fnEnv });
        samples.push(benchLine(stdout, ['ms']).ms);
      }
      coldStart[name] = { sizeKiB: Math.round(statSync(file).size / 1024), initMs: figure(samples) };
    }
    results.coldStart = coldStart;
  }

  // 2. Bootstrap: agent start → voting member, founding and joining.
  if (only.has('bootstrap')) {
    progress.step('bootstrap: agent start → voting member');
    const founding: number[] = [];
    const joining: number[] = [];
    const runs = quick ? 1 : RUNS;
    for (let r = 0; r < runs; r++) {
      progress.update(`bootstrap: run ${r + 1}/${runs}`);
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
  }

  // 3. Lifecycle: message → member removed → lifecycle completed; cold (a fresh process per event, as nearly
  // every termination is in Lambda) and warm (one process).
  if (only.has('lifecycle')) {
    progress.step('lifecycle: message → member removed → lifecycle completed');
    const group = await createSimulatedGroup({ network, groupName: unique('life'), size: 4 });
    const [a, b, c, spare] = group.instances as [typeof group.instances[number], typeof group.instances[number], typeof group.instances[number], typeof group.instances[number]];
    const etcd = await EtcdTestCluster.start({ nodes: [a, b, c].map((i) => ({ name: i.instanceId, ip: i.privateIp })), workDir: path.join(workDir, unique('life')), processes });
    const shim = await startAutoScalingShim({ upstream: moto.endpoint });
    const admin = new Etcd3Cluster(etcd.clientUrls(), { dialTimeoutMs: 1000, callTimeoutMs: 5000 });
    const lifecycleEnv = { AWS_ENDPOINT_URL_AUTO_SCALING: shim.endpoint, ETCD_ASG_NAME: group.groupName, POWERTOOLS_LOG_LEVEL: 'ERROR', POWERTOOLS_METRICS_DISABLED: 'true' };
    let event = 0;
    /** Adds the spare as a learner (to be removed) and returns the lifecycle message that removes it. */
    const nextEvent = async () => {
      await waitFor('a learner add to be accepted', () => admin.addLearner(`http://${spare.privateIp}:2380`).then(() => true), { timeoutMs: 30_000, intervalMs: 200 });
      return JSON.stringify({
        LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
        AutoScalingGroupName: group.groupName,
        LifecycleHookName: 'etcd-terminate',
        EC2InstanceId: spare.instanceId,
        LifecycleActionToken: `bench-${++event}`,
      });
    };
    try {
      // Cold: node starts, loads the bundle, handles one message. `total` is from spawn to the result.
      const coldOnce = async (share?: CpuShare) => {
        const body = await nextEvent();
        const script = `const t0 = performance.now(); const m = await import(${JSON.stringify(pathToFileURL(built.functions.lifecycle!).href)}); const t1 = performance.now();
          const out = await m.handler(JSON.parse(process.env.BENCH_EVENT), { functionName: 'bench', awsRequestId: 'r', getRemainingTimeInMillis: () => 60000 });
          if (out.batchItemFailures.length > 0) throw new Error('the lifecycle handler failed its record');
          process.stdout.write('\\nBENCH ' + JSON.stringify({ initMs: t1 - t0, handlerMs: performance.now() - t1 }) + '\\n'); process.exit(0);`;
        const [command, argv] = share ? share.wrap(process.execPath, ['--input-type=module', '-e', script]) : [process.execPath, ['--input-type=module', '-e', script]];
        const t = process.hrtime.bigint();
        const { stdout } = await run(command, argv, {
          ...CHILD,
          env: { ...fnEnv, ...emulatorEnv(moto.endpoint), ...lifecycleEnv, BENCH_EVENT: JSON.stringify(sqsEvent([body])) },
        });
        const total = ms(t);
        return { total, ...benchLine(stdout, ['initMs', 'handlerMs']) };
      };
      const init: number[] = [];
      const handle: number[] = [];
      const total: number[] = [];
      for (let i = 0; i < COLD_LIFECYCLE_RUNS; i++) {
        progress.update(`lifecycle cold: ${i + 1}/${COLD_LIFECYCLE_RUNS}`);
        const once = await coldOnce();
        total.push(once.total);
        init.push(once.initMs);
        handle.push(once.handlerMs);
      }
      const p = (xs: number[]) => ({ p50Ms: percentile(xs, 50), p99Ms: percentile(xs, 99) });
      results.lifecycleCold = { events: total.length, processToResult: p(total), init: p(init), firstInvocation: p(handle) };
      // The same with the CPU a Lambda function of each memory size gets.
      if (CpuShare.available()) {
        const bySize: Record<string, { runs: number; processToResult: Figure; init: Figure }> = {};
        for (const memoryMb of LAMBDA_MEMORY_MB) {
          const share = CpuShare.create(memoryMb);
          try {
            const t: number[] = [];
            const i0: number[] = [];
            for (let i = 0; i < SIZED_RUNS; i++) {
              progress.update(`lifecycle cold at ${memoryMb} MB of Lambda CPU: ${i + 1}/${SIZED_RUNS}`);
              const once = await coldOnce(share);
              t.push(once.total);
              i0.push(once.initMs);
            }
            bySize[String(memoryMb)] = { runs: t.length, processToResult: figure(t), init: figure(i0) };
          } finally {
            share.close();
          }
        }
        results.lifecycleColdByMemory = bySize;
      } else {
        progress.update('lifecycle cold by Lambda memory size: skipped (needs root and the cgroup v1 cpu controller)');
      }

      // Warm: the same process handles one message after another.
      Object.assign(process.env, lifecycleEnv);
      const { handler } = (await import(pathToFileURL(built.functions.lifecycle!).href)) as { handler: (e: unknown, c: unknown) => Promise<{ batchItemFailures: unknown[] }> };
      const context = { functionName: 'bench', awsRequestId: 'r', getRemainingTimeInMillis: () => 60_000 };
      const latencies: number[] = [];
      const events = quick ? 10 : 50;
      for (let i = 0; i < events + 2; i++) {
        progress.update(`lifecycle warm: ${i + 1}/${events + 2}`);
        const body = await nextEvent();
        const t = process.hrtime.bigint();
        const out = await handler(sqsEvent([body]), context);
        const elapsed = ms(t);
        if (out.batchItemFailures.length > 0) throw new Error('lifecycle handler failed a record');
        if (i >= 2) latencies.push(elapsed); // the first two warm the handler up
      }
      results.lifecycle = { events: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), minMs: Math.min(...latencies), maxMs: Math.max(...latencies) };
    } finally {
      admin.close();
      await shim.close();
      delete process.env.AWS_ENDPOINT_URL_AUTO_SCALING;
      await etcd.teardown();
    }
  }

  // 4 + 5. Backup and restore against what a user would run instead, per database size.
  if (only.has('backup')) {
    const backup: Record<string, unknown> = {};
    const restore: Record<string, unknown> = {};
    for (const mb of SIZES_MB) {
      progress.step(`backup and restore, ${mb} MB: filling the database`);
      const group = await createSimulatedGroup({ network, groupName: unique(`db${mb}`), size: 3 });
      const etcd = await EtcdTestCluster.start({ nodes: group.instances.map((i) => ({ name: i.instanceId, ip: i.privateIp })), workDir: path.join(workDir, unique('db')), processes });
      try {
        await fill(etcd.clientUrls(), mb);
        const leader = etcd.clientUrls()[0]!;
        const env = { ...process.env, ...fnEnv, ...emulatorEnv(moto.endpoint), ETCD_ASG_NAME: group.groupName, POWERTOOLS_LOG_LEVEL: 'ERROR', POWERTOOLS_METRICS_DISABLED: 'true', BACKUP_KEEP_LAST: '3', BACKUP_KEEP_HOURLY_HOURS: '0', BACKUP_KEEP_DAILY_DAYS: '0' };
        const samples = { handler: [] as number[], rss: [] as number[], saveThenUpload: [] as number[], save: [] as number[], upload: [] as number[], pipeline: [] as number[], pipelineFirstByte: [] as number[], pipelineRss: [] as number[], saveTmpfs: [] as number[] };
        let dbBytes = 0;
        const measures: Array<[string, () => Promise<void>]> = [
          ['handler', async () => {
            const line = await backupHandler(env);
            samples.handler.push(line.ms);
            samples.rss.push(line.maxRssKiB / 1024);
            dbBytes = line.size;
          }],
          ['save-then-upload', async () => {
            const { stdout } = await probe('save-then-upload', [leader, path.join(workDir, 'cron-snapshot.db'), bucket, `cron/${unique('snap')}.db`], env);
            const line = benchLine(stdout, ['ms', 'saveMs', 'uploadMs']);
            samples.saveThenUpload.push(line.ms);
            samples.save.push(line.saveMs);
            samples.upload.push(line.uploadMs);
          }],
          ['pipeline', async () => {
            const line = benchLine((await probe('pipeline', [leader], env)).stdout, ['ms', 'maxRssKiB', 'firstByteMs']);
            samples.pipeline.push(line.ms);
            samples.pipelineFirstByte.push(line.firstByteMs);
            samples.pipelineRss.push(line.maxRssKiB / 1024);
          }],
          ['etcdctl-save-tmpfs', async () => {
            // etcdctl writes <path>.part and renames it over <path>: never /dev/null (as root it would replace
            // the device with a file). A file on tmpfs costs a memory copy, as a discarding sink does.
            const file = path.join('/dev/shm', `${unique('etcd-aws-bench')}.db`);
            const t = process.hrtime.bigint();
            await run(etcdctlBin(), ['--endpoints', leader, 'snapshot', 'save', file], { ...CHILD, env: { PATH: process.env.PATH, ETCDCTL_API: '3' } });
            samples.saveTmpfs.push(ms(t));
            rmSync(file, { force: true });
          }],
        ];
        for (let r = 0; r < RUNS; r++) {
          // Each run starts with a different side, so neither always gets a warm page cache or a rested etcd.
          for (let k = 0; k < measures.length; k++) {
            const [label, measure] = measures[(r + k) % measures.length]!;
            progress.update(`backup ${mb} MB: run ${r + 1}/${RUNS}, ${label}`);
            await measure();
          }
        }
        const f = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, figure(v)])) as Record<keyof typeof samples, Figure>;
        backup[`${mb}MB`] = {
          dbMiB: Math.round(dbBytes / 2 ** 20),
          handlerMs: f.handler,
          saveThenUploadMs: f.saveThenUpload,
          etcdctlSaveMs: f.save,
          sdkUploadMs: f.upload,
          handlerVsSaveThenUpload: f.handler.median / f.saveThenUpload.median,
          pipelineDiscardMs: f.pipeline,
          pipelineFirstByteMs: f.pipelineFirstByte,
          etcdctlSaveTmpfsMs: f.saveTmpfs,
          pipelineVsEtcdctlSave: f.pipeline.median / f.saveTmpfs.median,
          handlerPeakRssMiB: f.rss,
          pipelinePeakRssMiB: f.pipelineRss,
        };

        // The handler with the CPU a Lambda function of each memory size gets, on one database size.
        // And a scheduled reconcile run (cold: node start to result) on the same healthy cluster.
        if (mb === SIZED_BACKUP_MB && CpuShare.available()) {
          const bySize: Record<string, Figure> = {};
          const reconcileBySize: Record<string, Figure> = {};
          for (const memoryMb of LAMBDA_MEMORY_MB) {
            const share = CpuShare.create(memoryMb);
            try {
              const t: number[] = [];
              for (let r = 0; r < SIZED_RUNS_BACKUP; r++) {
                progress.update(`backup ${mb} MB at ${memoryMb} MB of Lambda CPU: ${r + 1}/${SIZED_RUNS_BACKUP}`);
                t.push((await backupHandler(env, share)).ms);
              }
              bySize[String(memoryMb)] = figure(t);
              const c: number[] = [];
              for (let r = 0; r < SIZED_RUNS; r++) {
                progress.update(`reconcile at ${memoryMb} MB of Lambda CPU: ${r + 1}/${SIZED_RUNS}`);
                c.push(await reconcileCold(env, share));
              }
              reconcileBySize[String(memoryMb)] = figure(c);
            } finally {
              share.close();
            }
          }
          results.backupByMemory = { databaseMB: mb, handlerMs: bySize };
          results.reconcileColdByMemory = reconcileBySize;
        }

        // Restore: the agent's path against a script's download-then-restore of the same backup.
        const store = new S3SnapshotStore(s3, bucket);
        const newest = pairBackups(await store.list(snapshotFolder('', group.groupName))).backups[0]!;
        const agentPath: number[] = [];
        const scripted: number[] = [];
        const download: number[] = [];
        const restoreOnly: number[] = [];
        for (let r = 0; r < RUNS; r++) {
          const sides: Array<[string, () => Promise<void>]> = [
            ['agent', async () => {
              const dir = path.join(workDir, unique('restore-agent'));
              agentPath.push(benchLine((await probe('agent-restore', [bucket, newest.snapshotKey, newest.metadataKey, dir], env)).stdout, ['ms']).ms);
              rmSync(dir, { recursive: true, force: true });
            }],
            ['download-then-restore', async () => {
              const dir = path.join(workDir, unique('restore-script'));
              const { stdout } = await probe('download-then-restore', [bucket, newest.snapshotKey, path.join(workDir, 'script-download.db'), dir], env);
              const line = benchLine(stdout, ['ms', 'downloadMs', 'restoreMs']);
              scripted.push(line.ms);
              download.push(line.downloadMs);
              restoreOnly.push(line.restoreMs);
              rmSync(dir, { recursive: true, force: true });
            }],
          ];
          for (let k = 0; k < sides.length; k++) {
            const [label, side] = sides[(r + k) % sides.length]!;
            progress.update(`restore ${mb} MB: run ${r + 1}/${RUNS}, ${label}`);
            await side();
          }
        }
        const tool = await EtcdRestoreTool.find(etcdRelease().binDir);
        const ra = figure(agentPath);
        const rb = figure(scripted);
        restore[`${mb}MB`] = { agentRestoreMs: ra, downloadThenRestoreMs: rb, downloadMs: figure(download), toolRestoreMs: figure(restoreOnly), ratio: ra.median / rb.median, tool: tool.tool };
      } finally {
        await etcd.teardown();
      }
    }
    results.backup = backup;
    results.restore = restore;
  }

  // 6. Recovery after total loss: three new agents start → all voting and serving.
  if (only.has('recovery')) {
    progress.step('total-loss recovery: three new agents → all voting');
    const recovery: Record<string, Figure> = {};
    for (const mb of quick ? [1] : [1, 200]) {
      const samples: number[] = [];
      const runs = quick ? 1 : RUNS;
      for (let r = 0; r < runs; r++) {
        progress.update(`total-loss recovery ${mb} MB: run ${r + 1}/${runs}`);
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
          await run(process.execPath, ['--input-type=module', '-e', script], { ...CHILD, env });
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
  }
  results.durationSeconds = Math.round((Date.now() - started) / 1000);
  progress.done(`bench done in ${String(results.durationSeconds)} s`);
}

function fmt(f: Figure, unit = 'ms'): string {
  const n = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  return `${n(f.median)} ${unit} (${n(f.min)}–${n(f.max)}, n=${f.runs})`;
}

/** The goals of bench/README.md's performance issue, checked against this run's figures. */
const GOALS = {
  handlerVsSaveThenUpload: 0.8,
  pipelineVsEtcdctlSave: 1.2,
  restoreVsDownloadThenRestore: 1.05,
  backupPeakRssMiB: 150,
  initMs: 300,
};
const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');

interface BackupRow {
  dbMiB: number;
  handlerMs: Figure;
  saveThenUploadMs: Figure;
  etcdctlSaveMs: Figure;
  sdkUploadMs: Figure;
  handlerVsSaveThenUpload: number;
  pipelineDiscardMs: Figure;
  pipelineFirstByteMs: Figure;
  etcdctlSaveTmpfsMs: Figure;
  pipelineVsEtcdctlSave: number;
  handlerPeakRssMiB: Figure;
  pipelinePeakRssMiB: Figure;
}
interface RestoreRow {
  agentRestoreMs: Figure;
  downloadThenRestoreMs: Figure;
  downloadMs: Figure;
  toolRestoreMs: Figure;
  ratio: number;
  tool: string;
}

/** A section's heading and its table's header row. */
function tableHead(title: string, columns: readonly string[]): string[] {
  return ['', `## ${title}`, '', `| ${columns.join(' | ')} |`, `|${columns.map(() => '---|').join('')}`];
}

function report(): string {
  const m = results.machine as Record<string, unknown>;
  const runFlags = [
    ...(quick ? ['--quick'] : []),
    ...(only.size < SECTIONS.length ? [`--only ${[...only].join(',')}`] : []),
    ...(args.sizes === undefined ? [] : [`--sizes ${args.sizes}`]),
  ];
  const lines = [
    '# Benchmark results',
    '',
    `Generated by \`npm run bench${runFlags.length > 0 ? ` -- ${runFlags.join(' ')}` : ''}\` on ${String(m.date)}: ${String(m.cpus)} CPUs (${String(m.cpuModel)}), ${String(m.memoryGiB)} GiB, etcd ${String(m.etcd)}, Node ${String(m.node)}, AWS emulated by moto on loopback. Medians with (min–max, runs). What the figures can and cannot say about AWS: [README.md](README.md).`,
  ];
  const goals: string[] = [];
  if (results.backup) {
    const rows = Object.entries(results.backup as Record<string, BackupRow>);
    lines.push(...tableHead('Backup: the handler (snapshot streamed to S3) vs a script (`etcdctl snapshot save` to disk, then the SDK\'s multipart upload of the file)', ['database', 'handler', 'save then upload', '(save + upload)', 'ratio', 'handler peak RSS']));
    for (const [size, v] of rows) {
      lines.push(`| ${size} (${v.dbMiB} MiB) | ${fmt(v.handlerMs)} | ${fmt(v.saveThenUploadMs)} | ${v.etcdctlSaveMs.median.toFixed(0)} + ${v.sdkUploadMs.median.toFixed(0)} ms | ${v.handlerVsSaveThenUpload.toFixed(2)} | ${fmt(v.handlerPeakRssMiB, 'MiB')} |`);
    }
    lines.push(...tableHead('Backup pipeline without S3: snapshot → verifier → a sink that discards, vs `etcdctl snapshot save` to tmpfs', ['database', 'pipeline', '… of which to the first byte', 'etcdctl snapshot save (tmpfs)', 'ratio', 'pipeline peak RSS (tsx process)']));
    for (const [size, v] of rows) {
      lines.push(`| ${size} | ${fmt(v.pipelineDiscardMs)} | ${fmt(v.pipelineFirstByteMs)} | ${fmt(v.etcdctlSaveTmpfsMs)} | ${v.pipelineVsEtcdctlSave.toFixed(2)} | ${fmt(v.pipelinePeakRssMiB, 'MiB')} |`);
    }
    const worst = (pick: (v: BackupRow) => number) => Math.max(...rows.map(([, v]) => pick(v)));
    const rss = rows.map(([, v]) => v.handlerPeakRssMiB.median);
    goals.push(
      `| backup handler ≤ ${GOALS.handlerVsSaveThenUpload}× save-then-upload | ${worst((v) => v.handlerVsSaveThenUpload).toFixed(2)}× (worst size) | ${verdict(worst((v) => v.handlerVsSaveThenUpload) <= GOALS.handlerVsSaveThenUpload)} |`,
      `| pipeline with a discarding sink ≤ ${GOALS.pipelineVsEtcdctlSave}× etcdctl snapshot save | ${worst((v) => v.pipelineVsEtcdctlSave).toFixed(2)}× (worst size) | ${verdict(worst((v) => v.pipelineVsEtcdctlSave) <= GOALS.pipelineVsEtcdctlSave)} |`,
      `| backup peak RSS ≤ ${GOALS.backupPeakRssMiB} MiB, flat across sizes | ${Math.min(...rss).toFixed(0)}–${Math.max(...rss).toFixed(0)} MiB | ${verdict(Math.max(...rss) <= GOALS.backupPeakRssMiB)} |`,
    );
  }
  if (results.restore) {
    const rows = Object.entries(results.restore as Record<string, RestoreRow>);
    lines.push(...tableHead('Restore: the agent (metadata, download through the verifier, restore) vs a script (download to a file, then the etcd tool)', ['database', 'agent', 'download then restore', '(download + restore)', 'ratio']));
    for (const [size, v] of rows) {
      lines.push(`| ${size} | ${fmt(v.agentRestoreMs)} | ${fmt(v.downloadThenRestoreMs)} | ${v.downloadMs.median.toFixed(0)} + ${v.toolRestoreMs.median.toFixed(0)} ms (${v.tool}) | ${v.ratio.toFixed(2)} |`);
    }
    const worst = Math.max(...rows.map(([, v]) => v.ratio));
    goals.push(`| restore ≤ ${GOALS.restoreVsDownloadThenRestore}× download-then-restore | ${worst.toFixed(2)}× (worst size) | ${verdict(worst <= GOALS.restoreVsDownloadThenRestore)} |`);
  }
  if (results.lifecycleCold) {
    const c = results.lifecycleCold as { events: number; processToResult: { p50Ms: number; p99Ms: number }; init: { p50Ms: number; p99Ms: number }; firstInvocation: { p50Ms: number; p99Ms: number } };
    const l = results.lifecycle as { events: number; p50Ms: number; p99Ms: number; minMs: number; maxMs: number };
    lines.push(
      '',
      '## Lifecycle: message → member removed → lifecycle action completed',
      '',
      '| | p50 | p99 |',
      '|---|---|---|',
      `| cold, node start to result (${c.events} fresh processes) | ${c.processToResult.p50Ms.toFixed(0)} ms | ${c.processToResult.p99Ms.toFixed(0)} ms |`,
      `| … of which module initialisation | ${c.init.p50Ms.toFixed(0)} ms | ${c.init.p99Ms.toFixed(0)} ms |`,
      `| … of which the first invocation | ${c.firstInvocation.p50Ms.toFixed(0)} ms | ${c.firstInvocation.p99Ms.toFixed(0)} ms |`,
      `| warm (${l.events} events, one process; min ${l.minMs.toFixed(1)}, max ${l.maxMs.toFixed(1)}) | ${l.p50Ms.toFixed(1)} ms | ${l.p99Ms.toFixed(1)} ms |`,
    );
  }
  if (results.lifecycleColdByMemory || results.backupByMemory) {
    const cold = (results.lifecycleColdByMemory ?? {}) as Record<string, { runs: number; processToResult: Figure; init: Figure }>;
    const backupBy = results.backupByMemory as { databaseMB: number; handlerMs: Record<string, Figure> } | undefined;
    lines.push(
      '',
      `## On the CPU of a Lambda function's memory size (memory / ${MB_PER_VCPU} MB of one CPU, a cgroup CPU quota on this machine)`,
      '',
      `| memory | cold lifecycle: node start to result | … of which initialisation | backup of ${backupBy ? `${backupBy.databaseMB} MB` : '—'} | cold reconcile: node start to result |`,
      '|---|---|---|---|---|',
    );
    for (const memoryMb of LAMBDA_MEMORY_MB) {
      const c = cold[String(memoryMb)];
      const b = backupBy?.handlerMs[String(memoryMb)];
      const r = (results.reconcileColdByMemory as Record<string, Figure> | undefined)?.[String(memoryMb)];
      lines.push(`| ${memoryMb} MB | ${c ? fmt(c.processToResult) : '—'} | ${c ? fmt(c.init) : '—'} | ${b ? fmt(b) : '—'} | ${r ? fmt(r) : '—'} |`);
    }
  }
  if (results.bootstrap) {
    const b = results.bootstrap as { foundingMs: Figure; joiningMs: Figure };
    lines.push('', '## Bootstrap: agent start → voting member', '', '| founding node | joining node |', '|---|---|', `| ${fmt(b.foundingMs)} | ${fmt(b.joiningMs)} |`);
  }
  if (results.totalLossRecoveryMs) {
    lines.push('', '## Recovery after total loss: three new agents start → all three voting (restore included)', '', '| database | time |', '|---|---|');
    for (const [size, f] of Object.entries(results.totalLossRecoveryMs as Record<string, Figure>)) lines.push(`| ${size} | ${fmt(f)} |`);
  }
  if (results.coldStart) {
    const rows = Object.entries(results.coldStart as Record<string, { sizeKiB: number; initMs: Figure }>);
    lines.push('', '## Cold start: bundle size and module initialisation (fresh node process, source maps on as in Lambda)', '', '| bundle | size | init |', '|---|---|---|');
    for (const [name, v] of rows) lines.push(`| ${name} | ${v.sizeKiB} KiB | ${fmt(v.initMs)} |`);
    const worst = Math.max(...rows.map(([, v]) => v.initMs.median));
    goals.push(`| module initialisation ≤ ${GOALS.initMs} ms per function | ${worst.toFixed(0)} ms (slowest function) | ${verdict(worst <= GOALS.initMs)} |`);
  }
  if (goals.length > 0) {
    lines.push('', '## Goals (this run)', '');
    if (SIZES_MB.some((mb) => mb < 50)) lines.push(`The goals are set for databases of 50 MB to 1 GB; this run's ${SIZES_MB.filter((mb) => mb < 50).join(', ')} MB, where fixed costs (connections, discovery, metadata) dominate, checks that the bench works, not the goals.`, '');
    lines.push('| goal | measured | |', '|---|---|---|', ...goals);
  }
  lines.push('', `Total bench time: ${String(results.durationSeconds)} s. Raw figures: [results.json](results.json).`, '');
  return lines.join('\n');
}

void main()
  .then(() => {
    // A quick or partial run is a check, not the record: it leaves bench/RESULTS.md to the full run.
    const outDir = quick || partial ? path.join(REPO_ROOT, '.testbed', 'bench-quick') : path.join(REPO_ROOT, 'bench');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(path.join(outDir, 'RESULTS.md'), report());
    process.stdout.write(`${report()}\n`);
    return 0;
  })
  .catch((error: unknown) => {
    progress.fail();
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    return 1;
  })
  .then(async (code) => {
    await processes.stopAll(3000);
    network.release();
    rmSync(workDir, { recursive: true, force: true });
    process.exit(code);
  });
