import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../scripts/build.mjs';
import { REPO_ROOT } from '../../testbed/tools.js';
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
    expect(summary.clientEndpoints.every((u) => /^http:\/\/127\.\d+\.\d+\.\d+:2379$/.test(u))).toBe(true);
    for (const pid of [summary.pids.emulator, ...summary.pids.agents]) expect(alive(pid)).toBe(false);
    // The agents' etcd children are gone too: nothing listens on the members' client URLs any more.
    for (const url of summary.clientEndpoints) await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
