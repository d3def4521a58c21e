import { createServer } from 'node:net';
import path from 'node:path';
import type { ManagedProcess, ProcessGroup } from './processes.js';
import { REPO_ROOT, motoServerBin } from './tools.js';
import { waitFor } from './wait.js';

export interface Emulator {
  /** The URL every SDK client reaches through AWS_ENDPOINT_URL. */
  readonly endpoint: string;
  readonly process: ManagedProcess;
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts moto in server mode on loopback, one request at a time (see moto_server.py: S3 conditional writes
 * must be atomic, as in S3), and waits until it answers.
 */
export async function startMoto(processes: ProcessGroup, workDir: string): Promise<Emulator> {
  const port = await freePort();
  const logFile = path.join(workDir, 'moto.log');
  const python = path.join(path.dirname(motoServerBin()), 'python');
  const proc = processes.spawn('moto', python, [path.join(REPO_ROOT, 'testbed', 'moto_server.py'), '127.0.0.1', String(port)], { logFile });
  const endpoint = `http://127.0.0.1:${port}`;
  await waitFor(
    `moto to answer on ${endpoint} (log: ${logFile})`,
    async () => {
      if (!proc.running()) throw new Error(`moto exited; see ${logFile}`);
      const res = await fetch(`${endpoint}/moto-api/`);
      return res.ok;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  return { endpoint, process: proc };
}

/** Environment that points the AWS SDK at the emulator with throwaway credentials. */
export function emulatorEnv(endpoint: string, region = 'us-east-1'): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    // The SDK must not look for a profile or for IMDS credentials outside the test bed.
    AWS_EC2_METADATA_DISABLED: 'true',
    // Lambda runs Node 22; the tools here may run Node 20, which the SDK warns about on every process.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}
