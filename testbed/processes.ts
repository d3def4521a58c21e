import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, readdirSync } from 'node:fs';

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Promise<number | string>;
  readonly running: () => boolean;
}

export interface SpawnOptions {
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Run as another user (root only), e.g. to test permission errors that root would not see. */
  readonly uid?: number;
  readonly gid?: number;
  /**
   * A cgroup v2 directory the process (and every process it starts) runs in from its first instruction:
   * what the test bed's network faults match on (see net-faults.ts).
   */
  readonly cgroup?: string;
}

const owned = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test process ends without teardown: every child still known is killed by PID.
  process.on('exit', () => {
    for (const child of owned) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
}

/**
 * Owns the processes a test or the sandbox starts: each is tracked by PID, its output goes to a log file,
 * and `stopAll` ends every one of them (SIGTERM, then SIGKILL after a timeout), also after a failure.
 */
export class ProcessGroup {
  private readonly children = new Map<number, { child: ChildProcess; process: ManagedProcess }>();

  spawn(name: string, command: string, args: readonly string[], options: SpawnOptions): ManagedProcess {
    installExitHook();
    const fd = openSync(options.logFile, 'a');
    let child: ChildProcess;
    try {
      // The shell joins the cgroup, then becomes the command (same PID): nothing runs outside it.
      const [file, argv] = options.cgroup
        ? ['/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', options.cgroup, command, ...args]]
        : [command, [...args]];
      child = spawn(file, argv, {
        stdio: ['ignore', fd, fd],
        env: options.env ?? process.env,
        cwd: options.cwd,
        uid: options.uid,
        gid: options.gid,
      });
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command}); see ${options.logFile}`);
    const exited = new Promise<number | string>((resolve, reject) => {
      child.once('error', (error) => reject(new Error(`${name} (${command}) failed to start: ${error.message}`)));
      child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });
    exited.catch(() => undefined);
    const pid = child.pid;
    const managed: ManagedProcess = {
      name,
      pid,
      logFile: options.logFile,
      exited,
      running: () => child.exitCode === null && child.signalCode === null,
    };
    owned.add(child);
    this.children.set(pid, { child, process: managed });
    void exited.finally(() => {
      owned.delete(child);
      this.children.delete(pid);
    });
    return managed;
  }

  /**
   * SIGTERM, then SIGKILL if the process has not exited within `graceMs` (etcd without quorum may not
   * exit). Its descendants (an agent's etcd) get SIGKILL once it is gone, if they outlived it.
   */
  async stop(target: ManagedProcess, graceMs = 5000): Promise<void> {
    if (!target.running()) return;
    const descendants = descendantsOf(target.pid);
    signal(target.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      for (const pid of [target.pid, ...descendantsOf(target.pid), ...descendants]) signal(pid, 'SIGKILL');
    }, graceMs);
    try {
      await target.exited.catch(() => undefined);
    } finally {
      clearTimeout(timer);
    }
    await killAndReap(descendants);
  }

  /** SIGKILL to the process and every descendant: a crash of the whole instance, no chance to clean up. */
  async kill(target: ManagedProcess): Promise<void> {
    if (!target.running()) return;
    const descendants = descendantsOf(target.pid);
    signal(target.pid, 'SIGKILL');
    await target.exited.catch(() => undefined);
    await killAndReap(descendants);
  }

  /** SIGKILL to every descendant, not the process itself (an agent's etcd crashes; the agent sees it exit). */
  killDescendants(target: ManagedProcess): void {
    for (const pid of descendantsOf(target.pid)) signal(pid, 'SIGKILL');
  }

  /** SIGSTOP to the process and its descendants: they hold their state and answer nothing until resumed. */
  pause(target: ManagedProcess): void {
    for (const pid of [target.pid, ...descendantsOf(target.pid)]) signal(pid, 'SIGSTOP');
  }

  /** SIGCONT to the process and its descendants. */
  resume(target: ManagedProcess): void {
    for (const pid of [target.pid, ...descendantsOf(target.pid)]) signal(pid, 'SIGCONT');
  }

  async stopAll(graceMs = 5000): Promise<void> {
    await Promise.all([...this.children.values()].map(({ process: p }) => this.stop(p, graceMs)));
  }

  get size(): number {
    return this.children.size;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // exited between the check and the signal
  }
}

/** PIDs of every descendant of `pid`, from /proc (Linux). */
export function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number) => {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const task of tasks) {
      let children = '';
      try {
        children = readFileSync(`/proc/${p}/task/${task}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const child of children.split(' ').filter(Boolean).map(Number)) {
        out.push(child);
        visit(child);
      }
    }
  };
  visit(pid);
  return out;
}

/** Alive and not a zombie waiting to be reaped. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** SIGKILL orphans left by a killed parent and wait (bounded) until they are gone. */
async function killAndReap(pids: readonly number[]): Promise<void> {
  for (const pid of pids) signal(pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (pids.some(isAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
