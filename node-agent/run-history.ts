import { readFile, rename, writeFile } from 'node:fs/promises';
import type { EtcdRun } from '../core/domain/health.js';
import { describeError } from '../core/errors.js';
import type { Log } from '../core/logger.js';

const KEEP = 20;

/**
 * The agent's memory of its etcd starts, across its own restarts (systemd restarts it whenever etcd exits): a
 * small JSON file beside the data dir, on the same volume. Losing it only forgets a crash loop; every failure
 * to read or write it is logged and ignored.
 */
export class RunHistory {
  constructor(
    private readonly file: string,
    private readonly log: Log,
  ) {}

  async runs(): Promise<EtcdRun[]> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as { runs?: EtcdRun[] };
      return Array.isArray(parsed.runs) ? parsed.runs : [];
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('etcd run history unreadable; starting a new one', { file: this.file, error: describeError(error) });
      return [];
    }
  }

  /** Forgets every run: the data they failed on was set aside (a new member starts from scratch). */
  async reset(): Promise<void> {
    await this.update(() => []);
  }

  /** Records a start; returns a handle to record what became of it. */
  async started(at: number, options: { fromScratch: boolean } = { fromScratch: false }): Promise<{ served(at: number): Promise<void>; exited(at: number, exit: number | string, stopped: boolean): Promise<void> }> {
    await this.update((runs) => [...runs, { startedAt: at, ...(options.fromScratch ? { fromScratch: true } : {}) }]);
    const patch = (change: Partial<EtcdRun>) =>
      this.update((runs) => runs.map((r) => (r.startedAt === at ? { ...r, ...change } : r)));
    let servedOnce = false;
    return {
      served: async (servedAt) => {
        if (servedOnce) return;
        servedOnce = true;
        await patch({ servedAt });
      },
      exited: (exitedAt, exit, stopped) => patch({ exitedAt, exit, stopped }),
    };
  }

  private async update(change: (runs: EtcdRun[]) => EtcdRun[]): Promise<void> {
    try {
      const runs = change(await this.runs()).slice(-KEEP);
      const tmp = `${this.file}.tmp`;
      await writeFile(tmp, `${JSON.stringify({ runs })}\n`);
      await rename(tmp, this.file);
    } catch (error) {
      this.log.warn('could not record an etcd run', { file: this.file, error: describeError(error) });
    }
  }
}
