import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { etcdutlBin } from './tools.js';

const run = promisify(execFile);

/** etcd's own offline restore (etcdutl) of a snapshot file into a new data dir for a one-member cluster. */
export async function etcdutlRestore(snapshotFile: string, dataDir: string, name: string, ip: string): Promise<void> {
  await run(
    etcdutlBin(),
    [
      'snapshot',
      'restore',
      snapshotFile,
      `--data-dir=${dataDir}`,
      `--name=${name}`,
      `--initial-cluster=${name}=http://${ip}:2380`,
      `--initial-advertise-peer-urls=http://${ip}:2380`,
      `--initial-cluster-token=restored-${path.basename(dataDir)}`,
    ],
    { env: { PATH: process.env.PATH } },
  );
}
