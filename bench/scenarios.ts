/**
 * `npm run bench:scenarios [-- --runs N] [scenario...]`: what a client sees in each sandbox scenario, as
 * medians (min–max) over N runs (default 3): time from the fault to convergence, the longest time between
 * two acknowledged writes, acknowledged writes lost and, after a restore, the RPO in seconds. Written to
 * bench/SCENARIOS.md and bench/scenarios.json. Every run must also pass its invariants, or the bench fails.
 * Naming scenarios runs only those and keeps the other rows of the previous results (each row says when it
 * was measured). Not part of the tests (the e2e suite runs each scenario once and checks it).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runScenario, SCENARIOS, type ScenarioSummary } from '../sandbox/scenarios.js';
import { Sandbox, bundlesIn } from '../sandbox/world.js';
import { build } from '../scripts/build.mjs';
import { startMoto } from '../testbed/moto.js';
import { claimLoopbackNetwork } from '../testbed/network.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT, etcdctlBin } from '../testbed/tools.js';
import { figure, type Figure } from './stats.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { runs: { type: 'string', default: '3' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer (got ${values.runs})`);
const names = positionals.length > 0 ? positionals : Object.keys(SCENARIOS);
for (const n of names) if (!(n in SCENARIOS)) throw new Error(`no scenario "${n}"; choose from ${Object.keys(SCENARIOS).join(', ')}`);

const say = (line: string) => process.stdout.write(`${line}\n`);
const processes = new ProcessGroup();
const network = claimLoopbackNetwork();
const workDir = path.join(REPO_ROOT, '.testbed', `bench-scenarios-${Date.now()}`);
mkdirSync(workDir, { recursive: true });

interface Row {
  readonly scenario: string;
  readonly convergeMs: Figure;
  readonly longestUnavailableMs: Figure;
  readonly lost: Figure;
  readonly acknowledged: Figure;
  readonly rpoSeconds?: Figure;
  /** When this row was measured (a run of some scenarios keeps the others' rows from earlier runs). */
  readonly measured?: string;
}

async function main(): Promise<void> {
  const dist = path.join(workDir, 'dist');
  await build({ outDir: dist, quiet: true });
  const bundles = bundlesIn(dist);
  const moto = await startMoto(processes, workDir);
  const rows: Row[] = [];
  let counter = 0;
  for (const name of names) {
    const summaries: ScenarioSummary[] = [];
    for (let r = 0; r < runs; r++) {
      counter += 1;
      const summary = await runScenario(name, {
        workDir: path.join(workDir, `${name}-${r}`),
        processes,
        network,
        bundles,
        awsEndpoint: moto.endpoint,
        name: `bench-${counter}-${Date.now().toString(36)}`,
        start: (o) => Sandbox.start(o),
      });
      if (!summary.ok) throw new Error(`${name} run ${r + 1} broke an invariant: ${summary.violations.join('; ')} (logs: ${summary.logs})`);
      say(
        `${name} run ${r + 1}/${runs}: converged ${(summary.convergeMs / 1000).toFixed(1)}s, longest unavailability ${(summary.writes.longestUnavailableMs / 1000).toFixed(2)}s, ` +
          `${summary.writes.lost}/${summary.writes.acknowledged} writes lost${summary.rpo ? `, RPO ${summary.rpo.seconds.toFixed(2)}s` : ''}`,
      );
      summaries.push(summary);
    }
    const rpo = summaries.flatMap((s) => (s.rpo ? [s.rpo.seconds] : []));
    rows.push({
      scenario: name,
      convergeMs: figure(summaries.map((s) => s.convergeMs)),
      longestUnavailableMs: figure(summaries.map((s) => s.writes.longestUnavailableMs)),
      lost: figure(summaries.map((s) => s.writes.lost)),
      acknowledged: figure(summaries.map((s) => s.writes.acknowledged)),
      ...(rpo.length > 0 ? { rpoSeconds: figure(rpo) } : {}),
      measured: new Date().toISOString(),
    });
  }
  // A run of some scenarios keeps the rows of the others from the previous results, in the scenarios' order.
  const previous = earlierRows().filter((r) => !names.includes(r.scenario) && r.scenario in SCENARIOS);
  const all = [...previous, ...rows].sort((a, b) => Object.keys(SCENARIOS).indexOf(a.scenario) - Object.keys(SCENARIOS).indexOf(b.scenario));
  const etcd = execFileSync(etcdctlBin(), ['version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  const machine = { date: new Date().toISOString(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, etcd, runs };
  const f = (x: Figure, unit: (n: number) => string) => `${unit(x.median)} (${unit(x.min)}–${unit(x.max)})`;
  const secs = (n: number) => `${(n / 1000).toFixed(1)} s`;
  const md = [
    '# Sandbox scenarios: what a client sees',
    '',
    `Generated by \`npm run bench:scenarios\` on ${machine.date}: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, ${etcd}, Node ${machine.node}; AWS emulated by moto on loopback. Medians (min–max) over ${runs} runs each; every run passed its invariants.`,
    '',
    'Converged: from the fault until members == the group\'s instances, all voting and answering (cold-start: from the start). Longest unavailability: the longest time between two acknowledged writes of a client writing one key at a time through the endpoints. Lost: acknowledged writes missing afterwards. RPO: seconds of acknowledged writes after the restored backup.',
    '',
    '| Scenario | Converged | Longest unavailability | Writes lost | Writes acknowledged | RPO | Measured |',
    '|---|---|---|---|---|---|---|',
    ...all.map(
      (r) =>
        `| ${r.scenario} | ${f(r.convergeMs, secs)} | ${f(r.longestUnavailableMs, (n) => `${(n / 1000).toFixed(2)} s`)} | ${f(r.lost, String)} | ${f(r.acknowledged, String)} | ${r.rpoSeconds ? f(r.rpoSeconds, (n) => `${n.toFixed(1)} s`) : '–'} | ${(r.measured ?? machine.date).slice(0, 10)} |`,
    ),
    '',
    'The sandbox replaces a killed instance at once; in AWS the group\'s health check takes minutes, which adds to "converged" for kill-leader, kill-majority and total-loss (not to the unavailability of kill-leader, which is the election). The total-loss RPO here is short because the scenario writes right after its backup; in AWS it is up to the backup interval (5 minutes by default). A write in flight when its member dies waits for the client\'s call deadline (1.5 s) before it fails over, which is most of kill-leader\'s figure. kill-majority\'s includes the agents\' quorum-loss grace, 3 s here and 60 s by default.',
    '',
  ].join('\n');
  writeFileSync(path.join(REPO_ROOT, 'bench', 'SCENARIOS.md'), md);
  writeFileSync(path.join(REPO_ROOT, 'bench', 'scenarios.json'), `${JSON.stringify({ machine, rows: all }, null, 2)}\n`);
  say(`\n${md}`);
}

/** The rows of the previous results (bench/scenarios.json), each dated (older files: the file's date). */
function earlierRows(): Row[] {
  try {
    const old = JSON.parse(readFileSync(path.join(REPO_ROOT, 'bench', 'scenarios.json'), 'utf8')) as { machine: { date: string }; rows: Row[] };
    return old.rows.map((r) => ({ ...r, measured: r.measured ?? old.machine.date }));
  } catch {
    return [];
  }
}

// Ctrl-C ends the run and every process it started (the exit hook alone does not run on a signal).
let stopping = false;
const interrupted = (signal: NodeJS.Signals) => {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`bench:scenarios: ${signal}; stopping every process\n`);
  void processes.stopAll(5000).then(() => {
    network.release();
    process.exit(130);
  });
};
process.on('SIGINT', interrupted);
process.on('SIGTERM', interrupted);

void main()
  .then(() => 0, (error: unknown) => {
    process.stderr.write(`bench:scenarios: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  })
  .then(async (code) => {
    await processes.stopAll(5000);
    network.release();
    if (code === 0) rmSync(workDir, { recursive: true, force: true });
    else process.stderr.write(`bench:scenarios: logs kept in ${workDir}\n`);
    process.exit(code);
  });
