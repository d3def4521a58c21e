import { constants } from 'node:fs';
import { access, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../core/errors.js';

/** etcd could not write its data dir: a broken or read-only volume, which a new instance would not have. */
export class DataDirUnusableError extends ConfigError {}

/**
 * Checks, without creating or changing anything, that etcd will be able to write its data dir: the dir
 * itself when it exists, else its nearest existing parent.
 */
export async function assertDataDirWritable(dataDir: string): Promise<void> {
  let dir = path.resolve(dataDir);
  for (;;) {
    try {
      const info = await stat(dir);
      if (!info.isDirectory()) throw new DataDirUnusableError(`ETCD_DATA_DIR ${dataDir}: ${dir} exists and is not a directory`);
      break;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new DataDirUnusableError(
      `ETCD_DATA_DIR ${dataDir} is not writable (${dir} denies write access to uid ${process.getuid?.() ?? '?'}); ` +
        'fix its ownership or permissions, or point ETCD_DATA_DIR elsewhere',
    );
  }
}

/** Renames the data dir to `<dir>.stale-<time>` beside it: never deleted, so an operator can still look. */
export async function setAsideDataDir(dataDir: string, now: Date): Promise<string> {
  const target = `${dataDir}.stale-${now.toISOString().replace(/[:.]/g, '-')}`;
  await rename(dataDir, target);
  return target;
}
