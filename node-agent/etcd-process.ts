import { spawn, type ChildProcess } from 'node:child_process';
import { findExecutable } from '../core/etcd/binaries.js';
import { ConfigError } from '../core/errors.js';
import type { Log } from '../core/logger.js';

/** No etcd to run: an installation that failed on this instance (a new one installs it again). */
export class EtcdMissingError extends ConfigError {}

/** The etcd binary: in ETCD_AWS_BIN_DIR when set, else on PATH. A missing one is a clear EtcdMissingError. */
export async function findEtcdBinary(binDir: string | undefined): Promise<string> {
  const found = await findExecutable('etcd', binDir);
  if (found) return found;
  throw new EtcdMissingError(
    binDir
      ? `no executable etcd in ETCD_AWS_BIN_DIR=${binDir}; install etcd there or fix the setting`
      : 'no executable etcd on PATH; install etcd or set ETCD_AWS_BIN_DIR to the directory that holds it',
  );
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** etcd as the agent supervises it: one process at a time, replaced only on purpose. */
export interface SupervisedEtcd {
  /** PID of the etcd running now. */
  pid(): number;
  /**
   * Resolves with the exit code the agent should exit with (128 + signal number for a signal) once an etcd
   * exits that nobody is replacing: on its own, or after a forwarded SIGTERM/SIGINT.
   */
  readonly exited: Promise<number>;
  /** True once `exited` has resolved. */
  stopped(): boolean;
  /** True once the agent forwarded a stop signal to etcd: its exit is no failure of etcd's. */
  stoppedOnPurpose(): boolean;
  /**
   * Stops the running etcd (SIGTERM, then SIGKILL after `stopTimeoutMs`: without quorum etcd may not finish
   * shutting down) and starts it again with `env`, for this one process only. False, and nothing started,
   * when etcd already exited or the agent was told to stop.
   */
  restart(env: Record<string, string>): Promise<boolean>;
}

interface Child {
  readonly process: ChildProcess;
  readonly exit: Promise<number>;
}

/**
 * Starts etcd as a child with exactly the given environment, its output on ours (journald keeps it), and
 * forwards SIGTERM/SIGINT to it: the agent lives as long as etcd and exits with its code. A restart keeps
 * the agent alive across the swap; the environment of a restart is never reused by a later one.
 */
export function superviseEtcd(binary: string, env: Record<string, string>, log: Log, options: { stopTimeoutMs: number }): SupervisedEtcd {
  let terminating = false;
  // Read through a function: a forwarded signal may set it while a restart awaits.
  const shuttingDown = () => terminating;
  let finished = false;
  let replacing: Promise<void> | undefined;

  const spawnEtcd = (childEnv: Record<string, string>): Child => {
    const child = spawn(binary, [], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...childEnv },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (child.pid === undefined) throw new ConfigError(`could not start ${binary}`);
    const exit = new Promise<number>((resolve) => {
      child.once('error', (error) => {
        log.error('etcd failed to start', { error: error.message });
        resolve(1);
      });
      child.once('exit', (code, signal) => {
        log.info('etcd exited', { code, signal, pid: child.pid });
        resolve(code ?? 128 + (SIGNALS[signal ?? ''] ?? 0));
      });
    });
    return { process: child, exit };
  };

  let current = spawnEtcd(env);
  const forward = (signal: NodeJS.Signals) => {
    terminating = true;
    log.info('forwarding signal to etcd', { signal, pid: current.process.pid });
    current.process.kill(signal);
  };
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);

  const exited = (async () => {
    for (;;) {
      const watched = current;
      const code = await watched.exit;
      if (replacing) await replacing;
      if (current !== watched) continue;
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      finished = true;
      return code;
    }
  })();

  const stop = async (child: Child): Promise<void> => {
    child.process.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), options.stopTimeoutMs);
    });
    const how = await Promise.race([child.exit, killed]);
    clearTimeout(timer);
    if (how === 'timeout') {
      log.warn('etcd ignored SIGTERM; killing it', { pid: child.process.pid, stopTimeoutMs: options.stopTimeoutMs });
      child.process.kill('SIGKILL');
      await child.exit;
    }
  };

  return {
    pid: () => current.process.pid as number,
    exited,
    stopped: () => finished,
    stoppedOnPurpose: () => terminating,
    async restart(childEnv) {
      if (terminating || finished || replacing || current.process.exitCode !== null || current.process.signalCode !== null) return false;
      let done = () => {};
      replacing = new Promise<void>((resolve) => {
        done = resolve;
      });
      try {
        log.info('stopping etcd to restart it', { pid: current.process.pid });
        await stop(current);
        if (shuttingDown()) return false;
        current = spawnEtcd(childEnv);
        log.info('etcd restarted', { pid: current.process.pid });
        return true;
      } finally {
        replacing = undefined;
        done();
      }
    },
  };
}
