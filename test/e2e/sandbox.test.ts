import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../scripts/build.mjs';
import { REPO_ROOT } from '../../testbed/tools.js';
import { openBed, type Bed } from '../support/testbed.js';

const run = promisify(execFile);
let bed: Bed;
let agentBundle: string;

beforeAll(async () => {
  bed = openBed('sandbox-e2e');
  ({ agent: agentBundle } = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true }));
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
  it('brings up a 3-node cluster that every instance agent sees, then leaves no process behind', async () => {
    // Act: the sandbox is its own process, with its own emulator, as a user would start it
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', path.join(REPO_ROOT, 'sandbox', 'main.ts'), '--once', '--json', '--agent', agentBundle],
      { cwd: REPO_ROOT, timeout: 150_000, env: { ...process.env, AWS_ENDPOINT_URL: '' } },
    );
    const summary = JSON.parse(stdout.trim().split('\n').pop()!) as {
      ok: boolean;
      clientEndpoints: string[];
      clusterIds: string[];
      instances: Array<{ privateIp: string; sawLiveCluster: boolean }>;
      pids: { emulator: number; etcd: number[] };
    };

    // Assess
    expect(summary.ok).toBe(true);
    expect(summary.clusterIds).toHaveLength(1);
    expect(summary.instances).toHaveLength(3);
    for (const i of summary.instances) {
      expect(i.sawLiveCluster).toBe(true);
      expect(i.privateIp).toMatch(/^127\./);
    }
    expect(summary.clientEndpoints.every((u) => /^http:\/\/127\.\d+\.\d+\.\d+:2379$/.test(u))).toBe(true);
    for (const pid of [summary.pids.emulator, ...summary.pids.etcd]) expect(alive(pid)).toBe(false);
  });
});
