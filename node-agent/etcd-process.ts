import { spawn } from 'node:child_process';
import { findExecutable } from '../core/etcd/binaries.js';
import { ConfigError } from '../core/errors.js';
import type { Log } from '../core/logger.js';

/** The etcd binary: in ETCD_AWS_BIN_DIR when set, else on PATH. A missing one is a clear ConfigError. */
export async function findEtcdBinary(binDir: string | undefined): Promise<string> {
  const found = await findExecutable('etcd', binDir);
  if (found) return found;
  throw new ConfigError(
    binDir
      ? `no executable etcd in ETCD_AWS_BIN_DIR=${binDir}; install etcd there or fix the setting`
      : 'no executable etcd on PATH; install etcd or set ETCD_AWS_BIN_DIR to the directory that holds it',
  );
}

export interface RunningEtcd {
  readonly pid: number;
  /** Resolves with the exit code the agent should exit with (128 + signal number for a signal). */
  readonly exited: Promise<number>;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/**
 * Starts etcd as a child with exactly the given environment, its output on ours (journald keeps it), and
 * forwards SIGTERM/SIGINT to it: the agent lives as long as etcd and exits with its code.
 */
export function startEtcd(binary: string, env: Record<string, string>, log: Log): RunningEtcd {
  const child = spawn(binary, [], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (child.pid === undefined) throw new ConfigError(`could not start ${binary}`);
  const forward = (signal: NodeJS.Signals) => {
    log.info('forwarding signal to etcd', { signal, pid: child.pid });
    child.kill(signal);
  };
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  const exited = new Promise<number>((resolve) => {
    child.once('error', (error) => {
      log.error('etcd failed to start', { error: error.message });
      resolve(1);
    });
    child.once('exit', (code, signal) => {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      log.info('etcd exited', { code, signal });
      resolve(code ?? 128 + (SIGNALS[signal ?? ''] ?? 0));
    });
  });
  return { pid: child.pid, exited };
}
