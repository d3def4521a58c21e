import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

/** Whether a process with this PID exists (one of another user counts). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claims `dir` for this process: the directory is created atomically and holds the owner's PID; a claim whose
 * owner is dead is taken over. False while a live process holds it.
 */
export function tryClaimDir(dir: string): boolean {
  try {
    mkdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    let owner = NaN;
    try {
      owner = Number(readFileSync(`${dir}/pid`, 'utf8'));
    } catch {
      return false; // being written right now by its new owner
    }
    if (Number.isNaN(owner) || alive(owner)) return false;
    rmSync(dir, { recursive: true, force: true });
    try {
      mkdirSync(dir);
    } catch {
      return false;
    }
  }
  writeFileSync(`${dir}/pid`, String(process.pid));
  return true;
}

/** Whether a live process holds the claim on `dir`. */
export function claimOwnerAliveAt(dir: string): boolean {
  try {
    const owner = Number(readFileSync(`${dir}/pid`, 'utf8'));
    return !Number.isNaN(owner) && alive(owner);
  } catch {
    return false;
  }
}
