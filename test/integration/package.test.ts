import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../testbed/tools.js';

const run = promisify(execFile);
const out = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-package-'));

afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('serverless package', () => {
  it('packages offline with no AWS credentials into a template that cfn-lint accepts', async () => {
    // Prepare: no credentials, no profile, no emulator: exactly what an air-gapped CI has.
    const env = {
      PATH: process.env.PATH,
      HOME: out,
      SLS_TELEMETRY_DISABLED: '1',
      SLS_NOTIFICATIONS_MODE: 'off',
      CI: 'true',
    };

    // Act
    await run(path.join(REPO_ROOT, 'node_modules', '.bin', 'serverless'), ['package', '--package', out], {
      cwd: REPO_ROOT,
      env,
      timeout: 120_000,
    });
    const lint = await run(path.join(REPO_ROOT, '.venv', 'bin', 'cfn-lint'), [path.join(out, 'cloudformation-template-update-stack.json')]).then(
      (r) => ({ code: 0, output: r.stdout + r.stderr }),
      (error: unknown) => {
        const e = error as { code: number; stdout: string; stderr: string };
        return { code: e.code, output: e.stdout + e.stderr };
      },
    );

    // Assess
    expect(lint.output).toBe('');
    expect(lint.code).toBe(0);
    const template = JSON.parse(readFileSync(path.join(out, 'cloudformation-template-update-stack.json'), 'utf8')) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const fn = template.Resources.ReconcileLambdaFunction;
    expect(fn?.Properties).toMatchObject({ Runtime: 'nodejs22.x', Handler: 'dist/functions/reconcile/index.handler' });
    expect(template.Resources.LifecycleLambdaFunction?.Properties).toMatchObject({ Runtime: 'nodejs22.x', Handler: 'dist/functions/lifecycle/index.handler' });
    const mappings = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping');
    expect(mappings.map((m) => m.Properties)).toEqual([
      expect.objectContaining({ FunctionResponseTypes: ['ReportBatchItemFailures'], ScalingConfig: { MaximumConcurrency: 2 } }),
    ]);
    expect(template.Resources.LifecycleQueue?.Properties).toMatchObject({
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': ['LifecycleDeadLetterQueue', 'Arn'] }, maxReceiveCount: 5 },
    });
    const { stdout: listing } = await run(path.join(REPO_ROOT, '.venv', 'bin', 'python'), ['-m', 'zipfile', '-l', path.join(out, 'reconcile.zip')]);
    expect(listing).toContain('dist/functions/reconcile/index.mjs');
    expect(listing).not.toContain('node_modules/');
  });
});
