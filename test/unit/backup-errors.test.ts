import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { takeBackup } from '../../core/use-cases/backup.js';
import { backupWorld as world } from '../support/backup-world.js';

describe('a backup that fails says why', () => {
  it('an upload refused part-way fails the backup with S3\'s refusal, not the snapshot stream it cut short', async () => {
    const { deps, store, cluster } = world('222', undefined);
    // A snapshot still streaming when the upload gives up (many chunks, each a turn of the event loop later).
    cluster.snapshot = () =>
      Promise.resolve({
        stream: Readable.from(
          (async function* () {
            for (let i = 0; i < 100; i++) {
              await new Promise((resolve) => setImmediate(resolve));
              yield Buffer.alloc(512, i);
            }
          })(),
        ),
        headerRevision: () => undefined,
      });
    store.upload = async (_key, body) => {
      // As uploadMultipart does when S3 refuses a part: it stops reading the body (destroying it) and throws.
      for await (const _chunk of body) throw new Error('S3 refused part 2: SlowDown');
    };
    await expect(takeBackup(deps, { force: true })).rejects.toThrow('S3 refused part 2: SlowDown');
  });
});
