import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BUMP_REVISION_SINCE, compareVersions, formatVersion, parseEtcdVersion, type EtcdVersion } from '../domain/versions.js';
import { ConfigError, EtcdAwsError } from '../errors.js';
import { findExecutable } from './binaries.js';

const run = promisify(execFile);

export interface RestoreTarget {
  readonly name: string;
  readonly peerUrl: string;
  readonly token: string;
  readonly dataDir: string;
  /** Bump the revision by this much and mark it compacted, for clients that watch (etcdutl >= 3.5.10). */
  readonly bumpRevision: number | undefined;
}

/**
 * A snapshot file could not be restored by etcd's own tool. Retryable when the cause is this machine (the tool
 * was killed, the disk is full or read-only): the same snapshot may restore later. Not retryable when etcd
 * rejected the snapshot itself, which has already passed its SHA-256 check: then the backup is bad.
 */
export class RestoreFailedError extends EtcdAwsError {}

/** How the restore tool ended: its exit code (or spawn error code), the signal that killed it, its stderr. */
export interface RestoreToolFailure {
  readonly code: number | string | null | undefined;
  readonly signal: string | null | undefined;
  readonly stderr: string;
}

/** Errors of the machine, not of the snapshot, as the Go runtime and etcd print them. */
const LOCAL_CAUSES = /no space left on device|disk quota exceeded|read-only file system|permission denied|input\/output error|too many open files|cannot allocate memory|out of memory/i;

/**
 * Whose fault a failed restore is: `local` when the tool was killed, could not start, or reports an error of
 * the machine (disk, permissions, memory); `snapshot` when it ran and rejected the file. Pure.
 */
export function classifyRestoreToolFailure(failure: RestoreToolFailure): 'snapshot' | 'local' {
  if (failure.signal) return 'local';
  if (typeof failure.code !== 'number') return 'local';
  return LOCAL_CAUSES.test(failure.stderr) ? 'local' : 'snapshot';
}

/** The version an etcd tool reports (`etcdutl version`, `etcd --version`); a ConfigError when it says none in time. */
export async function toolVersion(binary: string, args: readonly string[]): Promise<EtcdVersion> {
  let stdout: string;
  try {
    ({ stdout } = await run(binary, [...args], { timeout: 10_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }));
  } catch (error) {
    throw new ConfigError(`${binary} ${args.join(' ')} failed: ${(error as Error).message}`, { cause: error });
  }
  const version = parseEtcdVersion(stdout);
  if (!version) throw new ConfigError(`${binary} ${args.join(' ')} printed no version: ${stdout.trim().slice(0, 200)}`);
  return version;
}

/**
 * Offline restore with etcd's own tool, `etcdutl snapshot restore` (etcd >= 3.5; 3.6 removed the etcdctl
 * one). Never passes --skip-hash-check: the snapshot's own SHA-256 trailer is checked again by etcd.
 */
export class EtcdRestoreTool {
  readonly tool = 'etcdutl';

  private constructor(
    private readonly binary: string,
    readonly version: EtcdVersion,
  ) {}

  /**
   * etcdutl in `binDir` (else on PATH), checked for what the settings need: `--bump-revision` exists from
   * etcdutl 3.5.10 on, and a restore that fails on an unknown flag must not be found out during a disaster.
   */
  static async find(binDir: string | undefined, options: { bumpRevision?: number | undefined } = {}): Promise<EtcdRestoreTool> {
    const found = await findExecutable('etcdutl', binDir);
    if (!found) {
      throw new ConfigError(
        `no etcdutl found ${binDir ? `in ETCD_AWS_BIN_DIR=${binDir}` : 'on PATH'}; install etcd's tools (etcd 3.5 or newer ships etcdutl) to restore backups`,
      );
    }
    const version = await toolVersion(found, ['version']);
    if (options.bumpRevision !== undefined && compareVersions(version, BUMP_REVISION_SINCE) < 0) {
      throw new ConfigError(
        `ETCD_AWS_BUMP_REVISION needs etcdutl ${formatVersion(BUMP_REVISION_SINCE)} or newer (--bump-revision, --mark-compacted); ` +
          `${found} is ${formatVersion(version)}: upgrade etcd or unset ETCD_AWS_BUMP_REVISION`,
      );
    }
    return new EtcdRestoreTool(found, version);
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
    if (target.bumpRevision !== undefined) args.push(`--bump-revision=${target.bumpRevision}`, '--mark-compacted');
    try {
      await run(this.binary, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, maxBuffer: 16 * 1024 * 1024 });
    } catch (error) {
      const e = error as { stderr?: string; message: string; code?: number | string | null; signal?: string | null };
      const detail = (e.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || e.message;
      const whose = classifyRestoreToolFailure({ code: e.code, signal: e.signal, stderr: e.stderr ?? '' });
      throw new RestoreFailedError(
        `etcdutl snapshot restore failed${e.signal ? ` (killed by ${e.signal})` : ''}: ${detail}` +
          (whose === 'local' ? ' (a problem of this machine, not of the backup: retried)' : ' (the snapshot was rejected)'),
        { cause: error, retryable: whose === 'local' },
      );
    }
  }
}
