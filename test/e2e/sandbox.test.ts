import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../scripts/build.mjs';
import { etcdBuilds } from '../../scripts/etcd-build.mjs';
import { REPO_ROOT, etcdRelease } from '../../testbed/tools.js';
import { waitFor } from '../../testbed/wait.js';
import { openBed, type Bed } from '../support/testbed.js';

const run = promisify(execFile);
let bed: Bed;
let dist: string;

beforeAll(async () => {
  bed = openBed('sandbox-e2e');
  dist = path.join(bed.workDir, 'dist');
  await build({ outDir: dist, quiet: true });
});

afterAll(async () => {
  await bed.dispose();
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run sandbox -- --once', () => {
  it('the agents build a 3-node cluster of voting members, and nothing is left running afterwards', async () => {
    // Act: the sandbox is its own process, with its own emulator, as a user would start it
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', path.join(REPO_ROOT, 'sandbox', 'main.ts'), '--once', '--json', '--dist', dist],
      { cwd: REPO_ROOT, timeout: 150_000, env: { ...process.env, AWS_ENDPOINT_URL: '' } },
    );
    const summary = JSON.parse(stdout.trim().split('\n').pop()!) as {
      ok: boolean;
      clientEndpoints: string[];
      clusterIds: string[];
      members: Array<{ name: string; voting: boolean }>;
      instances: Array<{ instanceId: string; privateIp: string }>;
      pids: { emulator: number; agents: number[] };
    };

    // Assess
    expect(summary.ok).toBe(true);
    expect(summary.clusterIds).toHaveLength(1);
    expect(summary.instances).toHaveLength(3);
    expect(summary.members.map((m) => m.name).sort()).toEqual(summary.instances.map((i) => i.instanceId).sort());
    expect(summary.members.every((m) => m.voting)).toBe(true);
    for (const i of summary.instances) expect(i.privateIp).toMatch(/^127\./);
    expect(summary.clientEndpoints.every((u) => /^https:\/\/127\.\d+\.\d+\.\d+:2379$/.test(u))).toBe(true);
    for (const pid of [summary.pids.emulator, ...summary.pids.agents]) expect(alive(pid)).toBe(false);
    // The agents' etcd children are gone too: nothing listens on the members' client URLs any more.
    for (const url of summary.clientEndpoints) await expect(fetch(`${url}/health`)).rejects.toThrow();
  });

  it('takes single actions while it runs: terminate through the hook, a backup, then quit leaves nothing running', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'sandbox', 'main.ts'), '--dist', dist], {
      cwd: REPO_ROOT,
      env: { ...process.env, AWS_ENDPOINT_URL: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const seen = (what: string, pattern: RegExp, timeoutMs = 120_000) =>
      waitFor(`the sandbox to print ${what}`, () => pattern.exec(out) ?? undefined, { timeoutMs, intervalMs: 200 }).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\n--- sandbox output ---\n${out}`);
      });
    try {
      await seen('its commands', /^commands:/m);
      const endpoints = (await seen('the client endpoints', /^client endpoints: (\S+)/m))[1]!.split(',');
      const victim = (await seen('a launched instance', /instance (i-[0-9a-f]+) \(127[^)]*\) launched/))[1]!;

      // A new launch template version with the next etcd minor (if any), then the instance is replaced through the hook.
      const builds = etcdBuilds();
      const at = builds.findIndex((b) => b.minor === etcdRelease().minor);
      const next = (builds[at + 1] ?? builds[at]!).version;
      child.stdin.write(`etcd ${next}\n`);
      await seen('the launch template change', new RegExp(`the launch template now installs etcd ${next.replace(/\./g, '\\.')}`));
      child.stdin.write(`terminate ${victim}\n`);
      await seen('the hook holding the instance', new RegExp(`terminating ${victim} through Auto Scaling`));
      await seen('the lifecycle handler releasing it', new RegExp(`instance ${victim} terminated`));
      await seen('a replacement on the new release', new RegExp(`instance i-[0-9a-f]+ \\(127[^)]*\\) launched with etcd ${next.replace(/\./g, '\\.')}`));
      child.stdin.write('backup\n');
      await seen('a backup', /backup uploaded: \S+\.db/);
      child.stdin.write('kill i-nonexistent\n');
      await seen('a clear error for an unknown instance', /kill needs instance IDs of the group: i-/);
      child.stdin.write('quit\n');
      expect(await exited).toBe(0);
      // An interactive run keeps its logs for the reader; the test removes them.
      const logs = /logs kept in (\S+)/.exec(out)?.[1];
      expect(logs).toBeDefined();
      rmSync(logs!, { recursive: true, force: true });
      for (const url of endpoints) await expect(fetch(`${url}/health`)).rejects.toThrow();
    } finally {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }
  });
});

