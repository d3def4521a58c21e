import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB (AWS Lambda docs, "Memory and computing power"). */
export const MB_PER_VCPU = 1769;

const CPU_CONTROLLER = '/sys/fs/cgroup/cpu';

/**
 * Runs measured processes with the CPU a Lambda function of `memoryMb` gets, through a cgroup (v1 cpu
 * controller) of their own with a CFS quota of memoryMb / 1769 of one CPU: `wrap(command, args)` returns
 * the command line that enters the cgroup (by the shell's own PID) and then becomes the command. Only the
 * measured process is limited, never etcd or the emulator. `close()` removes the cgroup once its processes
 * have ended. Unavailable (undefined) without root or without the cpu controller: the bench says so.
 */
export class CpuShare {
  private constructor(
    readonly memoryMb: number,
    private readonly dir: string,
  ) {}

  static available(): boolean {
    return process.getuid?.() === 0 && existsSync(path.join(CPU_CONTROLLER, 'cpu.cfs_quota_us'));
  }

  static create(memoryMb: number): CpuShare {
    const dir = path.join(CPU_CONTROLLER, `etcd-aws-bench-${process.pid}-${memoryMb}`);
    mkdirSync(dir, { recursive: true });
    const period = 100_000;
    writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(period));
    writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(Math.round((period * memoryMb) / MB_PER_VCPU)));
    return new CpuShare(memoryMb, dir);
  }

  wrap(command: string, args: readonly string[]): [string, string[]] {
    return ['/bin/sh', ['-c', `echo $$ > ${path.join(this.dir, 'cgroup.procs')} && exec "$@"`, 'cpu-share', command, ...args]];
  }

  close(): void {
    try {
      rmdirSync(this.dir);
    } catch {
      // still has a process (one that outlived its measurement): the kernel keeps it until it ends
    }
  }
}
