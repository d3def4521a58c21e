import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isBuilt, resolveEtcd, selectedEtcd, type EtcdBuild } from '../scripts/etcd-build.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Finds an executable on PATH (or in `dir` when given); the error says how to install it. */
export function executable(name: string, hint: string, dir?: string): string {
  const dirs = dir ? [dir] : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const d of dirs) {
    const candidate = path.join(d, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  throw new Error(`${name} not found ${dir ? `in ${dir}` : 'on PATH'}: ${hint}`);
}

const SETUP_HINT = 'run `npm test` (it runs scripts/setup.sh) or `bash scripts/setup.sh`';

/**
 * An etcd release the test bed runs: `version` "3.7" / "3.7.3" or, by default, the one ETCD_AWS_ETCD_VERSION
 * selects (the stack's default when unset). Its binaries must have been built (scripts/setup.sh does).
 */
export function etcdRelease(version?: string): EtcdBuild {
  const build = version === undefined ? selectedEtcd() : resolveEtcd(version);
  if (!isBuilt(build)) throw new Error(`etcd ${build.version} is not built in ${build.home}: ${SETUP_HINT}`);
  return build;
}

/** The newest minor release the test bed builds. */
export const NEWEST_ETCD = '3.7';

export const etcdBin = (version?: string) => path.join(etcdRelease(version).binDir, 'etcd');
export const etcdctlBin = (version?: string) => path.join(etcdRelease(version).binDir, 'etcdctl');
export const etcdutlBin = (version?: string) => path.join(etcdRelease(version).binDir, 'etcdutl');
export const motoServerBin = () =>
  executable('moto_server', `the project virtualenv is missing: ${SETUP_HINT}`, path.join(REPO_ROOT, '.venv', 'bin'));
