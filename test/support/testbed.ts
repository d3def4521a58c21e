import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSimulatedGroup, type SimulatedGroup } from '../../testbed/aws-world.js';
import { EtcdTestCluster } from '../../testbed/etcd.js';
import { claimLoopbackNetwork, type LoopbackNetwork } from '../../testbed/network.js';
import { ProcessGroup } from '../../testbed/processes.js';

/**
 * What an integration test file owns: a loopback /16, a work dir, and every process it starts.
 * `dispose` ends the processes by PID and releases the rest, also after a failure.
 */
export interface Bed {
  readonly network: LoopbackNetwork;
  readonly workDir: string;
  readonly processes: ProcessGroup;
  dispose(): Promise<void>;
}

export function openBed(label: string): Bed {
  const network = claimLoopbackNetwork();
  const workDir = mkdtempSync(path.join(os.tmpdir(), `etcd-aws-${label}-`));
  const processes = new ProcessGroup();
  return {
    network,
    workDir,
    processes,
    async dispose() {
      await processes.stopAll(3000);
      network.release();
      // KEEP_TESTBED=1 keeps data dirs and process logs for a post-mortem.
      if (process.env.KEEP_TESTBED === '1') process.stderr.write(`test bed kept in ${workDir}\n`);
      else rmSync(workDir, { recursive: true, force: true });
    },
  };
}

let groupCounter = 0;
export function uniqueName(prefix: string): string {
  groupCounter += 1;
  return `${prefix}-${process.pid}-${groupCounter}-${Date.now().toString(36)}`;
}

/** A simulated group in the emulator plus a real etcd cluster on its instances' private IPs, named after them. */
export async function groupWithCluster(bed: Bed, size: number, extraFlags: readonly string[] = []): Promise<{ group: SimulatedGroup; etcd: EtcdTestCluster }> {
  const group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size });
  const etcd = await EtcdTestCluster.start({
    nodes: group.instances.map((i) => ({ name: i.instanceId, ip: i.privateIp })),
    workDir: path.join(bed.workDir, group.groupName),
    processes: bed.processes,
    extraFlags,
  });
  return { group, etcd };
}
