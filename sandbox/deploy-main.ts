/**
 * `npm run deploy:emulator -- [--stage S] [--param name=value ...] [--keep]`: the real `serverless deploy` of
 * this repository against the AWS emulator on loopback (moto, with the gaps the stack meets filled in
 * testbed/moto_patches.py), to try a parameter set or a template change offline. Prints the stack's outputs
 * and what it created, then `serverless remove` (what the test/e2e/deploy.test.ts suite also runs). `--keep`
 * leaves the emulator up until Ctrl-C, and prints how to reach it with the AWS CLI.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { describeStack, serverless } from '../testbed/deploy.js';
import { emulatorEnv, startMoto } from '../testbed/moto.js';
import { ProcessGroup } from '../testbed/processes.js';
import { REPO_ROOT } from '../testbed/tools.js';

const USAGE = `usage: npm run deploy:emulator -- [--stage S] [--param name=value ...] [--keep]
  --stage S             the stage (default: emulator); the group is etcd-aws-S
  --param name=value    a stack parameter, as for serverless deploy (repeat it), e.g. --param clusterSize=5
  --keep                keep the emulator and the stack until Ctrl-C instead of removing the stack`;

function fail(message: string): never {
  process.stderr.write(`deploy:emulator: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: { stage: { type: 'string', default: 'emulator' }, param: { type: 'string', multiple: true, default: [] }, keep: { type: 'boolean', default: false } },
      strict: true,
    });
  } catch (error) {
    return fail((error as Error).message);
  }
})();
const params: Record<string, string> = {};
for (const pair of values.param) {
  const match = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(pair);
  if (!match?.[1]) fail(`--param ${pair}: expected name=value, e.g. --param clusterSize=5 (names: serverless.yml, params.default)`);
  params[match[1]] = match[2] ?? '';
}

const processes = new ProcessGroup();
const workDir = path.join(REPO_ROOT, '.testbed', `deploy-${Date.now().toString(36)}`);
mkdirSync(workDir, { recursive: true });
const say = (line: string) => process.stdout.write(`${line}\n`);
const stop = async (code: number) => {
  await processes.stopAll(3000);
  process.exit(code);
};
process.on('SIGINT', () => void stop(130));
process.on('SIGTERM', () => void stop(143));

async function main(): Promise<void> {
  say(`starting the AWS emulator (log: ${path.join(workDir, 'moto.log')})`);
  const moto = await startMoto(processes, workDir);
  say(`serverless deploy --stage ${values.stage}${Object.entries(params).map(([k, v]) => ` --param=${k}=${v}`).join('')} against ${moto.endpoint} …`);
  await serverless(moto.endpoint, 'deploy', values.stage, params);
  const stack = await describeStack(new CloudFormationClient({ endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } }), values.stage);
  say(`\n${stack.name}: ${stack.status}\noutputs:`);
  for (const [key, value] of Object.entries(stack.outputs)) say(`  ${key.padEnd(38)} ${value}`);
  const byType = new Map<string, number>();
  for (const r of Object.values(stack.resources)) byType.set(r.ResourceType ?? '?', (byType.get(r.ResourceType ?? '?') ?? 0) + 1);
  say(`resources (${Object.keys(stack.resources).length}):`);
  for (const [type, count] of [...byType].sort()) say(`  ${String(count).padStart(3)} ${type}`);
  if (values.keep) {
    const env = emulatorEnv(moto.endpoint);
    say(`\nthe emulator stays up until Ctrl-C; for example:\n  AWS_ENDPOINT_URL=${env.AWS_ENDPOINT_URL} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 aws cloudformation describe-stacks --stack-name ${stack.name}`);
    await new Promise(() => undefined);
  }
  say(`\nserverless remove --stage ${values.stage} …`);
  await serverless(moto.endpoint, 'remove', values.stage);
  say(`removed (the backup bucket ${stack.outputs.BackupBucketName ?? ''} is retained, as in AWS)`);
}

main().then(
  () => {
    rmSync(workDir, { recursive: true, force: true });
    return stop(0);
  },
  (error: unknown) => {
    process.stderr.write(`deploy:emulator: ${error instanceof Error ? error.message : String(error)}\n(the emulator's log is kept in ${workDir})\n`);
    void stop(1);
  },
);
