import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';

/** An etcd executable (etcd, etcdctl, etcdutl) in `binDir` when set, else on PATH; undefined when absent. */
export async function findExecutable(name: string, binDir: string | undefined): Promise<string | undefined> {
  const dirs = binDir ? [binDir] : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}
