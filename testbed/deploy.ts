import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CloudFormationClient, DescribeStacksCommand, ListStackResourcesCommand, type StackResourceSummary } from '@aws-sdk/client-cloudformation';
import { releaseClaimDir, tryClaimDir } from './claims.js';
import { emulatorEnv } from './moto.js';
import { REPO_ROOT } from './tools.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

/** `--param="name=value"` pairs of `serverless deploy`, as a user passes them. */
export type StackParams = Readonly<Record<string, string>>;

export interface DeployedStack {
  readonly name: string;
  readonly status: string;
  readonly outputs: Readonly<Record<string, string>>;
  /** Physical ID of each resource, by logical ID. */
  readonly resources: Readonly<Record<string, StackResourceSummary>>;
}

/**
 * Runs the real `serverless` command of this repository (osls) against the emulator, as a user would run it
 * against AWS: the only difference is AWS_ENDPOINT_URL and throwaway credentials. Output goes to the error on
 * failure, so a failed deploy says what CloudFormation (the emulator) refused.
 */
const DIST_LOCK = path.join(REPO_ROOT, '.testbed', 'locks', 'serverless-dist');

/**
 * Runs `fn` (a `serverless` command) alone among this checkout's test processes: every serverless command
 * builds the bundles into the repository's dist/ (scripts/serverless-build.cjs), packages them from there and
 * rewrites .serverless/, so two at once (the deploy and package tests, in parallel workers) delete each
 * other's files.
 */
export async function withDistLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(path.dirname(DIST_LOCK), { recursive: true });
  await waitFor(`the lock on dist/ (${DIST_LOCK}) held by another serverless command to be released`, () => tryClaimDir(DIST_LOCK), {
    timeoutMs: 15 * 60_000,
    intervalMs: 250,
  });
  try {
    return await fn();
  } finally {
    releaseClaimDir(DIST_LOCK);
  }
}

let lastTemplate: string | undefined;

/** The CloudFormation template of the last `serverless deploy` this process ran (as JSON text). */
export function lastDeployedTemplate(): string {
  if (lastTemplate === undefined) throw new Error('no serverless deploy has run in this process');
  return lastTemplate;
}

export async function serverless(endpoint: string, verb: 'deploy' | 'remove' | 'package', stage: string, params: StackParams = {}, extra: readonly string[] = []): Promise<string> {
  const home = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-sls-home-'));
  const args = [verb, '--stage', stage, ...Object.entries(params).map(([k, v]) => `--param=${k}=${v}`), ...extra];
  try {
    const { stdout, stderr } = await withDistLock(async () => {
      const out = await run(path.join(REPO_ROOT, 'node_modules', '.bin', 'serverless'), args, {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: home,
        ...emulatorEnv(endpoint),
        SLS_TELEMETRY_DISABLED: '1',
        SLS_NOTIFICATIONS_MODE: 'off',
        CI: 'true',
      },
      timeout: 240_000,
      maxBuffer: 16 * 1024 * 1024,
      });
      // The template it deployed, read before another serverless command may rewrite .serverless/.
      if (verb === 'deploy') lastTemplate = readFileSync(path.join(REPO_ROOT, '.serverless', 'cloudformation-template-update-stack.json'), 'utf8');
      return out;
    });
    return stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`serverless ${args.join(' ')} failed against ${endpoint}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** The stack `serverless deploy --stage <stage>` created: status, outputs and resources. */
export async function describeStack(cloudformation: CloudFormationClient, stage: string): Promise<DeployedStack> {
  const name = `etcd-aws-${stage}`;
  const stack = (await cloudformation.send(new DescribeStacksCommand({ StackName: name }))).Stacks?.[0];
  if (!stack) throw new Error(`no stack ${name}`);
  const resources: Record<string, StackResourceSummary> = {};
  let token: string | undefined;
  do {
    const page = await cloudformation.send(new ListStackResourcesCommand({ StackName: name, NextToken: token }));
    for (const r of page.StackResourceSummaries ?? []) if (r.LogicalResourceId) resources[r.LogicalResourceId] = r;
    token = page.NextToken;
  } while (token);
  const outputs = Object.fromEntries((stack.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
  return { name, status: stack.StackStatus ?? 'unknown', outputs, resources };
}
