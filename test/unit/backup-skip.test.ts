import { describe, expect, it } from 'vitest';
import { takeBackup } from '../../core/use-cases/backup.js';
import { backupWorld as world } from '../support/backup-world.js';

describe('skipping a backup when nothing changed', () => {
  it('skips when the cluster, the revision and the content hash are those of the newest backup', async () => {
    const { deps, uploads } = world('111', { revision: '100', hash: '111', compactRevision: '0' });
    expect(await takeBackup(deps)).toMatchObject({ status: 'skipped' });
    expect(uploads).toEqual([]);
  });

  it('backs up when the revision is the same but the content is not (revisions reused after a recovery from a lagging member)', async () => {
    const { deps, uploads } = world('222', { revision: '100', hash: '111', compactRevision: '0' });
    expect(await takeBackup(deps)).toMatchObject({ status: 'uploaded' });
    expect(uploads).toHaveLength(1);
  });

  it('backs up when the newest backup recorded no content hash (it cannot be compared)', async () => {
    const { deps } = world('111', undefined);
    expect(await takeBackup(deps)).toMatchObject({ status: 'uploaded' });
  });
});
