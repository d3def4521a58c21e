import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

export const etcdBin = () => executable('etcd', `install etcd-server: ${SETUP_HINT}`);
export const etcdctlBin = () => executable('etcdctl', `install etcd-client: ${SETUP_HINT}`);
export const motoServerBin = () =>
  executable('moto_server', `the project virtualenv is missing: ${SETUP_HINT}`, path.join(REPO_ROOT, '.venv', 'bin'));
