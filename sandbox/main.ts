/**
 * `npm run sandbox`: the control plane on one machine: the AWS emulator, an Auto Scaling group whose
 * instances' private IPs are loopback addresses, one IMDSv2 server per instance, and the node-agent bundle
 * (`run`) on each, which elects a founder, joins the others as learners, promotes them and supervises etcd.
 * Scenarios (replace, scale, total loss) land with the sandbox issue.
 *
 *   npm run sandbox                 start, print the endpoints, run until Ctrl-C
 *   npm run sandbox -- --once       start, check, tear down, exit (0 when every agent saw one cluster)
 *   npm run sandbox -- --json       print only the JSON summary
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { createSimulatedGroup } from '../testbed/aws-world.js';
import { AgentFleet, waitForVotingMembers } from '../testbed/agents.js';
import { emulatorEnv, startMoto } from '../testbed/moto.js';
import { claimLoopbackNetwork } from '../testbed/network.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT } from '../testbed/tools.js';


const { values } = parseArgs({
  options: {
    once: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    size: { type: 'string', default: '3' },
    agent: { type: 'string', default: path.join(REPO_ROOT, 'dist', 'node-agent', 'node-agent.mjs') },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write('usage: npm run sandbox [-- --once] [--json] [--size N] [--agent path/to/node-agent.mjs]\n');
  process.exit(0);
}

const size = Number(values.size);
if (!Number.isInteger(size) || size < 1 || size > 7 || size % 2 === 0) {
  process.stderr.write(`sandbox: --size must be an odd number from 1 to 7 (got ${values.size})\n`);
  process.exit(2);
}
if (!existsSync(values.agent)) {
  process.stderr.write(`sandbox: no node-agent bundle at ${values.agent}; run \`npm run build\` first\n`);
  process.exit(2);
}

const say = (line: string) => {
  if (!values.json) process.stdout.write(`${line}\n`);
};
const started = Date.now();
const step = (what: string) => say(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${what}`);

const processes = new ProcessGroup();
const network = claimLoopbackNetwork();
const workDir = path.join(REPO_ROOT, '.testbed', `sandbox-${new Date().toISOString().replace(/[:.]/g, '-')}`);
mkdirSync(workDir, { recursive: true });
let fleet: AgentFleet | undefined;
let tornDown = false;

async function teardown(): Promise<void> {
  if (tornDown) return;
  tornDown = true;
  await fleet?.closeAll();
  await processes.stopAll(5000);
  network.release();
}

async function main(): Promise<number> {
  step(`starting the AWS emulator (logs in ${path.relative(process.cwd(), workDir)})`);
  const moto = await startMoto(processes, workDir);
  Object.assign(process.env, emulatorEnv(moto.endpoint));

  step(`creating Auto Scaling group with ${size} instances in ${network.vpcCidr}`);
  const group = await createSimulatedGroup({ network, groupName: 'etcd-sandbox', size });
  const bucket = 'etcd-aws-sandbox-backups';
  await new S3Client({ forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: bucket }));

  step(`starting the node agent on every instance (logs in ${path.relative(process.cwd(), workDir)})`);
  fleet = new AgentFleet({ processes, workDir: path.join(workDir, 'agents'), bundle: values.agent, bucket, awsEndpoint: moto.endpoint });
  const agents = fleet;
  await Promise.all(group.instances.map((i) => agents.start(i)));
  const clientEndpoints = group.instances.map((i) => `http://${i.privateIp}:2379`);
  step('waiting for every member to be voting and healthy');
  const cluster = await waitForVotingMembers(
    clientEndpoints,
    group.instances.map((i) => i.instanceId),
    120_000,
  );
  const clusterIds = new Set(cluster.clusterIds);
  const ok = clusterIds.size === 1 && cluster.members.length === size;
  step(`converged: ${size} voting members`);

  const summary = {
    ok,
    emulator: moto.endpoint,
    group: group.groupName,
    bucket,
    clientEndpoints,
    clusterIds: [...clusterIds].map((id) => BigInt(id).toString(16)),
    members: cluster.members.map((m) => ({ id: BigInt(m.id).toString(16), name: m.name, voting: !m.isLearner })),
    instances: group.instances.map((i) => ({ instanceId: i.instanceId, privateIp: i.privateIp, agentLog: agents.node(i.instanceId).logFile })),
    pids: {
      emulator: moto.process.pid,
      agents: group.instances.map((i) => agents.node(i.instanceId).process?.pid),
    },
    logs: workDir,
  };

  say('');
  say(`cluster ${summary.clusterIds.join(', ')}: ${ok ? `${size} voting members, one cluster` : 'NOT converged'}`);
  say(`client endpoints: ${clientEndpoints.join(',')}`);
  say(`try:  etcdctl --endpoints ${clientEndpoints.join(',')} member list -w table`);
  say(`AWS emulator: ${moto.endpoint} (bucket ${bucket})`);
  say(`try:  AWS_ENDPOINT_URL=${moto.endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws autoscaling describe-auto-scaling-groups`);
  if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else say(`\n${JSON.stringify(summary, null, 2)}`);

  if (values.once) return ok ? 0 : 1;
  say('\nrunning; press Ctrl-C to stop and remove every process');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  return 0;
}

void main()
  .catch((error: unknown) => {
    process.stderr.write(`sandbox: ${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(`sandbox: process logs are in ${workDir}\n`);
    return 1;
  })
  .then(async (code) => {
    step('tearing down');
    await teardown();
    // A clean --once run leaves nothing behind; a failed one keeps its logs for the reader.
    if (values.once && code === 0) rmSync(workDir, { recursive: true, force: true });
    process.exit(code);
  });
