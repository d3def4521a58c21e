import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startMoto } from '../../testbed/moto.js';
import { ProcessGroup } from '../../testbed/processes.js';

declare module 'vitest' {
  export interface ProvidedContext {
    awsEndpoint: string;
  }
}

/** One AWS emulator for the whole run; each test file isolates itself with its own VPC and group names. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-moto-'));
  const processes = new ProcessGroup();
  const moto = await startMoto(processes, dir);
  project.provide('awsEndpoint', moto.endpoint);
  return async () => {
    await processes.stopAll(3000);
    rmSync(dir, { recursive: true, force: true });
  };
}
