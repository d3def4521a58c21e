/**
 * `npm run sandbox`: the control plane on one machine: the AWS emulator, an Auto Scaling group whose
 * instances' private IPs are loopback addresses, one IMDSv2 server + node agent + etcd per instance, the
 * Auto Scaling shim (termination hook), and the Lambda handlers (lifecycle through SQS, backup and
 * reconcile on schedules). See sandbox/world.ts.
 *
 *   npm run sandbox                       start a 3-node cluster, print the endpoints, take commands until Ctrl-C
 *   npm run sandbox -- <scenario>         run one fault scenario; a timeline, then a JSON summary
 *   npm run sandbox -- <scenario> --json  only the JSON summary
 *   npm run sandbox -- --once             start, check, tear down, exit (0 when the cluster converged)
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import ora, { type Ora } from 'ora';
import { hexMemberId } from '../core/domain/members.js';
import { claimLoopbackNetwork } from '../testbed/network.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT, etcdRelease, etcdctlBin } from '../testbed/tools.js';
import { etcdctlTlsArgs } from '../testbed/pki.js';
import { runScenario, SCENARIOS, type ScenarioSummary } from './scenarios.js';
import { Sandbox, bundlesIn, type Bundles } from './world.js';

const USAGE = `usage: npm run sandbox [-- [scenario] [options]]

  (no scenario)   start a cluster and keep it running; type commands (help lists them); Ctrl-C tears down
  <scenario>      run one scenario on a fresh cluster and print its timeline and a JSON summary:
${Object.entries(SCENARIOS)
  .map(([name, s]) => `                    ${name.padEnd(22)} ${s.description}`)
  .join('\n')}

options:
  --json          print only the JSON summary
  --once          (no scenario) start, wait until the cluster converged, tear down, exit
  --size N        (no scenario) instances in the group: 1, 3, 5 or 7 (default 3)
  --etcd V        (no scenario) the etcd release the instances start with: 3.5, 3.6 or 3.7 (default: the stack's,
                  or ETCD_AWS_ETCD_VERSION)
  --dist DIR      the built bundles (default dist/, which npm run sandbox builds)
  -h, --help      this text`;

const COMMANDS = `commands:
  status                     members, instances, leader
  terminate <instance-id>    Auto Scaling terminates it: Terminating:Wait, hook, lifecycle handler, replacement
  kill <instance-id>...      the instances die at once (no lifecycle hook); the group replaces them
  backup                     run the backup function now
  capacity <n>               set the group's desired capacity (a scale-in goes through the hook)
  etcd <version>             the launch template installs that etcd release (3.5, 3.6, 3.7) on instances
                             launched from now on; then terminate the old ones one at a time to roll
  update <version>           a stack update to that etcd release, rolled out as CloudFormation does it
  pause <instance-id>...     the instances stop answering (frozen), their instances still running
  resume <instance-id>...    they answer again
  break <instance-id>        its etcd fails on every start from now on (a failing disk)
  help                       this list
  quit                       tear everything down (as Ctrl-C)`;

function fail(message: string): never {
  process.stderr.write(`sandbox: ${message}\n`);
  process.exit(2);
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        once: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        size: { type: 'string', default: '3' },
        etcd: { type: 'string' },
        dist: { type: 'string', default: path.join(REPO_ROOT, 'dist') },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return fail(`${(error as Error).message}\n${USAGE}`);
  }
})();

if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const scenario = positionals[0];
if (positionals.length > 1) fail(`one scenario at a time (got ${positionals.join(' ')})`);
if (scenario !== undefined && !(scenario in SCENARIOS)) fail(`no scenario "${scenario}"; choose one of: ${Object.keys(SCENARIOS).join(', ')}`);
const size = Number(values.size);
if (!Number.isInteger(size) || size < 1 || size > 7 || size % 2 === 0) fail(`--size must be an odd number from 1 to 7 (got ${values.size})`);
const etcdVersion = values.etcd;
if (etcdVersion !== undefined) {
  try {
    etcdRelease(etcdVersion);
  } catch (error) {
    fail((error as Error).message);
  }
}
const bundles: Bundles = bundlesIn(values.dist);
for (const [name, file] of Object.entries<string>({ ...bundles })) {
  if (!existsSync(file)) fail(`no ${name} bundle at ${file}; run \`npm run build\` first (npm run sandbox does)`);
}

const human = !values.json;
const started = Date.now();
let spinner: Ora | undefined;
const print = (line: string) => {
  if (!human) return;
  spinner?.clear();
  process.stdout.write(`${line}\n`);
  spinner?.render();
};
const event = (atMs: number, message: string) => print(`[${(atMs / 1000).toFixed(1).padStart(6)}s] ${message}`);
const say = (message: string) => event(Date.now() - started, message);

/** A spinner (or, without a terminal, nothing until the step ends) with the step's live status. */
async function progress<T>(label: string, work: () => Promise<T>, status: () => string): Promise<T> {
  if (!human) return work();
  spinner = ora({ text: label, discardStdin: false }).start();
  const t0 = Date.now();
  const ticker = setInterval(() => {
    if (spinner) spinner.text = `${label} (${((Date.now() - t0) / 1000).toFixed(0)}s) ${status()}`;
  }, 500);
  try {
    return await work();
  } finally {
    clearInterval(ticker);
    spinner.stop();
    spinner = undefined;
  }
}

const processes = new ProcessGroup();
const network = claimLoopbackNetwork();
const workDir = path.join(REPO_ROOT, '.testbed', `sandbox-${scenario ?? 'run'}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
mkdirSync(workDir, { recursive: true });
let sandbox: Sandbox | undefined;
let tornDown = false;

// Ctrl-C (or SIGTERM) at any moment tears everything down: while commands are taken it ends the prompt,
// before or during a scenario it stops the run.
let onSignal: (() => void) | undefined;
const interrupted = (signal: NodeJS.Signals) => {
  if (onSignal) return onSignal();
  process.stderr.write(`sandbox: ${signal}; tearing down\n`);
  void teardown().then(() => process.exit(130));
};
process.on('SIGINT', interrupted);
process.on('SIGTERM', interrupted);

async function teardown(): Promise<void> {
  if (tornDown) return;
  tornDown = true;
  await sandbox?.close();
  await processes.stopAll(5000);
  network.release();
}

function printSummary(summary: unknown): void {
  if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stdout.write(`\n${JSON.stringify(summary, null, 2)}\n`);
}

async function runOne(name: string): Promise<number> {
  const summary: ScenarioSummary = await runScenario(name, {
    workDir,
    processes,
    network,
    bundles,
    name: 'etcd-sandbox',
    start: async (o) => (sandbox = await Sandbox.start(o)),
    onEvent: event,
    progress,
  });
  printSummary(summary);
  const w = summary.writes;
  print(
    `\n${name} ${summary.ok ? 'passed' : 'FAILED'}: converged in ${(summary.convergeMs / 1000).toFixed(1)}s; ` +
      `${w.acknowledged} writes acknowledged, ${w.lost} lost${summary.rpo ? ` (all after backup ${summary.rpo.backupKey}: an RPO of ${summary.rpo.seconds.toFixed(1)}s)` : ''}; ` +
      `longest unavailability ${(w.longestUnavailableMs / 1000).toFixed(1)}s; ` +
      (summary.cluster.restoredFrom ? `new cluster ${summary.cluster.after} restored from ${summary.cluster.restoredFrom}` : `cluster ${summary.cluster.after} throughout`),
  );
  if (!summary.ok) process.stderr.write(`sandbox: scenario ${name} failed: ${summary.violations.join('; ')}\nsandbox: process logs are in ${workDir}\n`);
  return summary.ok ? 0 : 1;
}

async function status(box: Sandbox): Promise<Record<string, unknown>> {
  const snapshot = await box.converge(5_000).catch(() => undefined);
  return {
    converged: snapshot !== undefined,
    leader: await box.leader(),
    clusterIds: snapshot?.clusterIds.map((id) => hexMemberId(id)),
    members: snapshot?.members.map((m) => ({ id: hexMemberId(m.id), name: m.name, voting: !m.isLearner })),
    instances: box.instances().map((i) => ({ instanceId: i.instanceId, privateIp: i.privateIp, etcd: box.etcdOf(i.instanceId), agentLog: box.fleet.node(i.instanceId).logFile })),
    launchTemplateEtcd: box.launchTemplateEtcd(),
    waiting: [...box.shim.waiting],
  };
}

async function command(box: Sandbox, line: string): Promise<boolean> {
  const [verb, ...args] = line.trim().split(/\s+/);
  switch (verb) {
    case undefined:
    case '':
      return true;
    case 'help':
      print(COMMANDS);
      return true;
    case 'quit':
    case 'exit':
      return false;
    case 'status':
      print(JSON.stringify(await status(box), null, 2));
      return true;
    case 'backup':
      await box.backup();
      return true;
    case 'terminate':
    case 'kill': {
      const ids = args.filter((a) => a.length > 0);
      const known = new Set(box.instances().map((i) => i.instanceId));
      const unknown = ids.filter((id) => !known.has(id));
      if (ids.length === 0 || unknown.length > 0 || (verb === 'terminate' && ids.length !== 1)) {
        print(`${verb} needs ${verb === 'terminate' ? 'one instance ID' : 'instance IDs'} of the group: ${[...known].join(', ')}`);
        return true;
      }
      if (verb === 'terminate') await box.terminate(ids[0]!);
      else await box.kill(ids);
      return true;
    }
    case 'capacity': {
      const n = Number(args[0]);
      if (!Number.isInteger(n) || n < 0 || n > 7) print('capacity needs a number from 0 to 7');
      else await box.setCapacity(n);
      return true;
    }
    case 'pause':
    case 'resume':
    case 'break': {
      const ids = args.filter((a) => a.length > 0);
      const known = new Set(box.instances().map((i) => i.instanceId));
      if (ids.length === 0 || ids.some((id) => !known.has(id)) || (verb === 'break' && ids.length !== 1)) {
        print(`${verb} needs ${verb === 'break' ? 'one instance ID' : 'instance IDs'} of the group: ${[...known].join(', ')}`);
      } else if (verb === 'pause') box.pause(ids);
      else if (verb === 'resume') box.resume(ids);
      else box.breakEtcd(ids[0]!);
      return true;
    }
    case 'update': {
      if (args[0] === undefined) print('update needs an etcd release: 3.5, 3.6 or 3.7');
      else print(`the stack update ended: ${await box.update({ etcdVersion: args[0] })}`);
      return true;
    }
    case 'etcd': {
      if (args[0] === undefined) print(`the launch template installs etcd ${box.launchTemplateEtcd()}; etcd <version> changes it`);
      else box.setLaunchTemplateEtcd(args[0]);
      return true;
    }
    default:
      print(`unknown command "${verb}"\n${COMMANDS}`);
      return true;
  }
}

async function interactive(): Promise<number> {
  const box = (sandbox = await Sandbox.start({
    size,
    workDir,
    processes,
    network,
    bundles,
    name: 'etcd-sandbox',
    onEvent: say,
    ...(etcdVersion === undefined ? {} : { etcdVersion }),
  }));
  const snapshot = await progress('waiting for every member to be voting and healthy', () => box.converge(180_000), () => '');
  const endpoints = box.endpoints();
  const summary = {
    ok: snapshot.clusterIds.length === 1 && snapshot.members.length === size,
    emulator: box.awsEndpoint,
    group: box.groupName,
    bucket: box.bucket,
    lifecycleQueue: box.queueUrl,
    autoScalingEndpoint: box.shim.endpoint,
    clientEndpoints: endpoints,
    clusterIds: snapshot.clusterIds.map((id) => hexMemberId(id)),
    members: snapshot.members.map((m) => ({ id: hexMemberId(m.id), name: m.name, voting: !m.isLearner })),
    instances: box.instances().map((i) => ({ instanceId: i.instanceId, privateIp: i.privateIp, agentLog: box.fleet.node(i.instanceId).logFile })),
    pids: { emulator: box.emulatorPid, agents: box.instances().map((i) => box.fleet.node(i.instanceId).process?.pid) },
    logs: workDir,
  };
  say(`converged: ${size} voting members, cluster ${summary.clusterIds.join(', ')}`);
  print('');
  print(`client endpoints: ${endpoints.join(',')}`);
  print(`  ${[etcdctlBin(etcdVersion), ...etcdctlTlsArgs()].join(' ')} --endpoints ${endpoints.join(',')} member list -w table`);
  print(`AWS emulator: ${box.awsEndpoint} (backups in s3://${box.bucket}); Auto Scaling with the hook: ${box.shim.endpoint}`);
  print(`  AWS_ENDPOINT_URL=${box.awsEndpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 aws s3 ls s3://${box.bucket} --recursive`);
  print(`scenarios: npm run sandbox -- <${Object.keys(SCENARIOS).join('|')}>`);
  if (values.once) {
    printSummary(summary);
    return summary.ok ? 0 : 1;
  }
  if (values.json) printSummary(summary);
  print(`\n${COMMANDS}\n`);
  return new Promise<number>((resolve) => {
    const rl = createInterface({ input: process.stdin, terminal: false });
    const done = () => {
      onSignal = undefined;
      rl.close();
      resolve(0);
    };
    onSignal = done;
    // One command at a time, in order.
    let queue = Promise.resolve();
    rl.on('line', (line) => {
      queue = queue.then(async () => {
        const more = await command(box, line).catch((error: unknown) => {
          print(`error: ${error instanceof Error ? error.message : String(error)}`);
          return true;
        });
        if (!more) done();
      });
    });
    // Without a terminal (stdin closed), keep running until a signal.
  });
}

void (scenario ? runOne(scenario) : interactive())
  .catch((error: unknown) => {
    spinner?.fail();
    process.stderr.write(`sandbox: ${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(`sandbox: process logs are in ${workDir} (moto.log, agents/<instance>.agent.log)\n`);
    return 1;
  })
  .then(async (code) => {
    say('tearing down');
    await teardown();
    // A clean non-interactive run leaves nothing behind; a failed one keeps its logs for the reader.
    if ((values.once || scenario) && code === 0) rmSync(workDir, { recursive: true, force: true });
    else say(`logs kept in ${workDir}`);
    process.exit(code);
  });
