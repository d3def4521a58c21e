/**
 * `npm run chaos -- [--runs N] [--seed S] [--steps K | --duration SECONDS] [--record]`: a randomized fault
 * campaign against the sandbox. Run i draws its faults from seed S+i (kill, terminate through the hook,
 * partition/heal, pause/resume, scale, backup, corrupt the newest backup, total loss), under
 * sequence-numbered writes, and checks after every step: never two clusters accepting writes, no
 * acknowledged write lost (after a total loss: only those after the restored backup, the RPO), convergence
 * within a bound. A failing run prints its seed and faults, and how to replay it; its logs are kept.
 * `--record` writes bench/CHAOS.md and bench/chaos.json.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { build } from '../scripts/build.mjs';
import { startMoto } from '../testbed/moto.js';
import { claimLoopbackNetwork } from '../testbed/network.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT, etcdctlBin } from '../testbed/tools.js';
import { runChaos, type ChaosRunResult } from './chaos.js';
import { FAULT_WEIGHTS, FaultStream } from './chaos-plan.js';
import { Sandbox, bundlesIn } from './world.js';

const USAGE = `usage: npm run chaos -- [--runs N] [--seed S] [--steps K | --duration SECONDS] [--record]
  --runs N        runs, each on a fresh sandbox (default 1)
  --seed S        run i draws its faults from seed S+i (default: from the clock, printed)
  --steps K       faults per run (default 4)
  --duration D    instead of --steps: faults until D seconds have passed in each run
  --record        add the runs to bench/chaos.json (a seed run again replaces its row) and rewrite bench/CHAOS.md`;

function fail(message: string): never {
  process.stderr.write(`chaos: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        runs: { type: 'string', default: '1' },
        seed: { type: 'string' },
        steps: { type: 'string', default: '4' },
        duration: { type: 'string' },
        record: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return fail((error as Error).message);
  }
})();
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const positiveInt = (name: string, raw: string | undefined): number => {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) fail(`--${name} must be a positive integer (got ${raw})`);
  return n;
};
const runs = positiveInt('runs', values.runs);
const steps = positiveInt('steps', values.steps);
const durationMs = values.duration === undefined ? undefined : positiveInt('duration', values.duration) * 1000;
const seed = values.seed === undefined ? Date.now() % 1_000_000 : Number(values.seed);
if (!Number.isSafeInteger(seed) || seed < 0) fail(`--seed must be a non-negative integer (got ${values.seed})`);

const started = Date.now();
const say = (line: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(7)}s] ${line}\n`);
const processes = new ProcessGroup();
const network = claimLoopbackNetwork();
const workDir = path.join(REPO_ROOT, '.testbed', `chaos-${new Date().toISOString().replace(/[:.]/g, '-')}`);
mkdirSync(workDir, { recursive: true });
let current: Sandbox | undefined;
const interrupted = (signal: NodeJS.Signals) => {
  process.stderr.write(`chaos: ${signal}; tearing down\n`);
  void (async () => {
    await current?.close();
    await processes.stopAll(5000);
    network.release();
    process.exit(130);
  })();
};
process.on('SIGINT', interrupted);
process.on('SIGTERM', interrupted);

function replay(result: ChaosRunResult): string {
  return `npm run chaos -- --runs 1 --seed ${result.seed} --steps ${result.steps.length}`;
}

async function main(): Promise<number> {
  say(`chaos campaign: ${runs} run(s), seeds ${seed}..${seed + runs - 1}, ${durationMs === undefined ? `${steps} faults` : `faults for ${durationMs / 1000}s`} per run; logs in ${workDir}`);
  const dist = path.join(workDir, 'dist');
  await build({ outDir: dist, quiet: true });
  const bundles = bundlesIn(dist);
  const moto = await startMoto(processes, workDir);
  const results: ChaosRunResult[] = [];
  for (let r = 0; r < runs; r += 1) {
    const runSeed = seed + r;
    const runDir = path.join(workDir, `seed-${runSeed}`);
    say(`run ${r + 1}/${runs} (seed ${runSeed})`);
    mkdirSync(runDir, { recursive: true });
    // The test bed itself may fail to start (the emulator answering an error page under load): tried again,
    // and a run that never started is a failed run, said so, not a skipped one.
    let startError: unknown;
    for (let attempt = 1; attempt <= 3 && current === undefined; attempt += 1) {
      try {
        current = await Sandbox.start({
          size: 3,
          workDir: path.join(runDir, `start-${attempt}`),
          processes,
          network,
          bundles,
          awsEndpoint: moto.endpoint,
          name: `chaos-${runSeed}-${attempt}`,
          // Backups are the campaign's own faults (and one after the start), so it knows which one a restore must use.
          backupEveryMs: 0,
          onEvent: (m) => appendFileSync(path.join(runDir, 'timeline.log'), `${new Date().toISOString()} ${m}\n`),
        });
      } catch (error) {
        startError = error;
        say(`  the sandbox did not start (attempt ${attempt}): ${(error as Error).message.split('\n')[0] ?? ''}`);
      }
    }
    if (current === undefined) {
      const result: ChaosRunResult = { seed: runSeed, ok: false, steps: [], violations: [`the sandbox did not start: ${(startError as Error).message.split('\n')[0] ?? ''}`], durationMs: 0, writes: { acknowledged: 0, lost: 0, excused: 0 }, samples: 0 };
      results.push(result);
      if (values.record) record(results);
      say(`run ${r + 1}/${runs} (seed ${runSeed}) FAILED: ${result.violations.join('; ')}`);
      continue;
    }
    let result: ChaosRunResult;
    try {
      result = await runChaos({ sandbox: current, faults: new FaultStream(runSeed), steps, ...(durationMs === undefined ? {} : { durationMs }), say: (m) => say(`  ${m}`) });
    } catch (error) {
      say(`  the run failed: ${(error as Error).stack ?? String(error)}`);
      result = { seed: runSeed, ok: false, steps: [], violations: [`the run failed: ${(error as Error).message}`], durationMs: 0, writes: { acknowledged: 0, lost: 0, excused: 0 }, samples: 0 };
    } finally {
      const closing = current.close();
      const closed = await Promise.race([closing.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 60_000).unref())]);
      if (!closed) say('  the sandbox did not close within 60 s; its processes are stopped by PID at the end');
      current = undefined;
    }
    results.push(result);
    if (result.ok) {
      rmSync(runDir, { recursive: true, force: true });
      say(`run ${r + 1}/${runs} (seed ${runSeed}) passed: ${result.steps.map((s) => s.fault).join(', ')}; ${result.writes.acknowledged} writes, ${result.writes.excused} after a restored backup`);
    } else {
      say(`run ${r + 1}/${runs} (seed ${runSeed}) FAILED: ${result.violations.join('; ')}`);
      say(`  faults: ${result.steps.map((s) => `${s.fault}${s.instanceId ? ` (${s.instanceId})` : ''}`).join(', ')}`);
      say(`  replay: ${replay(result)}; logs kept in ${runDir}`);
    }
    // After every run, so an interrupted campaign keeps what it measured.
    if (values.record) record(results);
  }
  const failed = results.filter((r) => !r.ok);
  say(`${results.length - failed.length} of ${results.length} runs passed${failed.length > 0 ? `; failed seeds: ${failed.map((f) => f.seed).join(', ')}` : ''}`);
  if (failed.length === 0) rmSync(workDir, { recursive: true, force: true });
  return failed.length === 0 ? 0 : 1;
}

interface Recorded {
  readonly campaigns: Array<{ readonly command: string; readonly date: string; readonly commit: string }>;
  readonly runs: Array<ChaosRunResult & { readonly fromLog?: true }>;
}

/** The recorded campaigns so far (bench/chaos.json), to which this one's runs are added (a seed run again replaces its row). */
function previous(): Recorded {
  try {
    const parsed = JSON.parse(readFileSync(path.join(REPO_ROOT, 'bench', 'chaos.json'), 'utf8')) as Partial<Recorded>;
    return { campaigns: parsed.campaigns ?? [], runs: parsed.runs ?? [] };
  } catch {
    return { campaigns: [], runs: [] };
  }
}

const recordedBefore = values.record ? previous() : { campaigns: [], runs: [] };
const thisCampaign = {
  command: `npm run chaos -- --runs ${runs} --seed ${seed} ${durationMs === undefined ? `--steps ${steps}` : `--duration ${durationMs / 1000}`} --record`,
  date: new Date().toISOString().slice(0, 10),
  commit: (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  })(),
};

function record(latest: ReadonlyArray<ChaosRunResult & { readonly fromLog?: true }>): void {
  const seeds = new Set(latest.map((r) => r.seed));
  const results = [...recordedBefore.runs.filter((r) => !seeds.has(r.seed)), ...latest].sort((a, b) => a.seed - b.seed);
  const campaigns = [...recordedBefore.campaigns, thisCampaign];
  const counts = new Map<string, number>();
  for (const r of results) for (const s of r.steps) counts.set(s.fault.split(' ')[0]!, (counts.get(s.fault.split(' ')[0]!) ?? 0) + 1);
  const etcd = etcdctlBin().split(path.sep).find((p) => /^\d+\.\d+\.\d+/.test(p)) ?? 'the selected release';
  const lines = [
    '# Chaos campaign',
    '',
    `Campaigns: ${campaigns.map((c) => `\`${c.command}\` (${c.date}, commit ${c.commit})`).join('; ')}; etcd ${etcd}, on a 2-core machine.`,
    'Each run starts a fresh 3-node sandbox, writes sequence-numbered keys throughout, takes one backup, then draws',
    `its faults from its seed (weights: ${Object.entries(FAULT_WEIGHTS).map(([k, w]) => `${k} ${w}`).join(', ')}; partitions and pauses held 2–30 s).`,
    'After every fault: convergence within 180 s; the same cluster (a new one only after a total loss, restored from the',
    'newest valid backup); no acknowledged write lost except those after the restored backup. Throughout: every running',
    'voter is asked alone, every 0.5 s, which cluster it serves and whether a linearizable read through it succeeds;',
    'two clusters doing so at once is a split brain.',
    '',
    `**${results.filter((r) => r.ok).length} of ${results.length} runs passed; ${results.reduce((n, r) => n + r.violations.length, 0)} invariant violations.**`,
    `Faults drawn: ${[...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}.`,
    `Writes acknowledged: ${results.reduce((n, r) => n + r.writes.acknowledged, 0)}; lost beyond the documented RPO: ${results.reduce((n, r) => n + r.writes.lost, 0)}; lost after a restored backup (the RPO): ${results.reduce((n, r) => n + r.writes.excused, 0)}.`,
    `Split-brain looks taken: ${results.reduce((n, r) => n + r.samples, 0)}${results.some((r) => r.fromLog) ? ` (not counted in the ${results.filter((r) => r.fromLog).length} runs taken from the log of an interrupted campaign, which kept only its progress lines)` : ''}.`,
    '',
    '| Seed | Faults (target) and convergence | Violations | Run |',
    '|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.seed} | ${r.steps.map((s) => `${s.fault}${s.convergeMs === undefined ? '' : ` (${(s.convergeMs / 1000).toFixed(1)} s)`}${s.restore ? ` → restored, ${s.restore.writesLost} writes after the backup` : ''}`).join('; ')} | ${r.violations.length === 0 ? 'none' : r.violations.join('; ').replace(/\|/g, '\\|')} | ${(r.durationMs / 1000).toFixed(0)} s |`,
    ),
    '',
  ];
  writeFileSync(path.join(REPO_ROOT, 'bench', 'CHAOS.md'), lines.join('\n'));
  writeFileSync(path.join(REPO_ROOT, 'bench', 'chaos.json'), `${JSON.stringify({ campaigns, runs: results }, null, 2)}\n`);
}

main()
  .then(async (code) => {
    await processes.stopAll(5000);
    network.release();
    process.exit(code);
  })
  .catch(async (error: unknown) => {
    process.stderr.write(`chaos: ${(error as Error).stack ?? String(error)}\n`);
    await current?.close().catch(() => undefined);
    await processes.stopAll(5000);
    network.release();
    process.exit(1);
  });
