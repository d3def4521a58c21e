import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ConfigError, EtcdAwsError } from '../errors.js';
import { findExecutable } from './binaries.js';

const run = promisify(execFile);

export interface RestoreTarget {
  readonly name: string;
  readonly peerUrl: string;
  readonly token: string;
  readonly dataDir: string;
  /** etcd >= 3.5 only (etcdutl): bump the revision and mark it compacted, for clients that watch. */
  readonly bumpRevision: number | undefined;
}

/** A snapshot file could not be restored by etcd's own tool. */
export class RestoreFailedError extends EtcdAwsError {}

/**
 * Offline restore with etcd's own tool: `etcdutl snapshot restore` where it exists (etcd >= 3.5),
 * `etcdctl snapshot restore` on 3.4. Never passes --skip-hash-check: the snapshot's own SHA-256 trailer is
 * checked again by etcd.
 */
export class EtcdRestoreTool {
  private constructor(
    private readonly binary: string,
    readonly tool: 'etcdutl' | 'etcdctl',
  ) {}

  static async find(binDir: string | undefined): Promise<EtcdRestoreTool> {
    for (const tool of ['etcdutl', 'etcdctl'] as const) {
      const found = await findExecutable(tool, binDir);
      if (found) return new EtcdRestoreTool(found, tool);
    }
    throw new ConfigError(
      `neither etcdutl nor etcdctl found ${binDir ? `in ETCD_AWS_BIN_DIR=${binDir}` : 'on PATH'}; install etcd's tools to restore backups`,
    );
  }

  async restore(snapshotFile: string, target: RestoreTarget): Promise<void> {
    const args = [
      'snapshot',
      'restore',
      snapshotFile,
      `--name=${target.name}`,
      `--data-dir=${target.dataDir}`,
      `--initial-cluster=${target.name}=${target.peerUrl}`,
      `--initial-advertise-peer-urls=${target.peerUrl}`,
      `--initial-cluster-token=${target.token}`,
    ];
    if (target.bumpRevision !== undefined && this.tool === 'etcdutl') {
      args.push(`--bump-revision=${target.bumpRevision}`, '--mark-compacted');
    }
    try {
      await run(this.binary, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ETCDCTL_API: '3' }, maxBuffer: 16 * 1024 * 1024 });
    } catch (error) {
      const e = error as { stderr?: string; message: string };
      const detail = (e.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || e.message;
      throw new RestoreFailedError(`${this.tool} snapshot restore failed: ${detail}`, { cause: error });
    }
  }
}
