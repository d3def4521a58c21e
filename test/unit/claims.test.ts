import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimOwnerAliveAt, releaseClaimDir, tryClaimDir } from '../../testbed/claims.js';

const roots: string[] = [];
function claimDir(): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'etcd-aws-claims-'));
  roots.push(root);
  return path.join(root, 'lock');
}
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});
const aged = (dir: string, seconds: number) => utimesSync(dir, new Date(Date.now() - seconds * 1000), new Date(Date.now() - seconds * 1000));

describe('directory claims', () => {
  it('claims a free directory once, and names this process as its owner', () => {
    const dir = claimDir();
    expect(tryClaimDir(dir)).toBe(true);
    expect(readFileSync(path.join(dir, 'pid'), 'utf8')).toBe(String(process.pid));
    expect(claimOwnerAliveAt(dir)).toBe(true);
    expect(tryClaimDir(dir)).toBe(false);
  });

  it.each([
    ['an empty PID file', ''],
    ['a garbled PID file', 'x1'],
    ['PID 0', '0'],
  ])('takes over a claim with %s once it is older than the grace period, not before', (_name, content) => {
    const dir = claimDir();
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'pid'), content);
    expect(claimOwnerAliveAt(dir)).toBe(false);
    expect(tryClaimDir(dir)).toBe(false);
    aged(dir, 60);
    expect(tryClaimDir(dir)).toBe(true);
  });

  it('takes over a claim whose owner is dead', () => {
    const dir = claimDir();
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'pid'), '2147483646');
    expect(tryClaimDir(dir)).toBe(true);
  });

  it("releases only its own claim: one taken over meanwhile stays its new owner's", () => {
    const dir = claimDir();
    expect(tryClaimDir(dir)).toBe(true);
    writeFileSync(path.join(dir, 'pid'), String(process.ppid));
    releaseClaimDir(dir);
    expect(claimOwnerAliveAt(dir)).toBe(true);
    writeFileSync(path.join(dir, 'pid'), String(process.pid));
    releaseClaimDir(dir);
    expect(tryClaimDir(dir)).toBe(true);
  });
});
