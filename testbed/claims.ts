import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';

/** How long a claim may lack a readable PID (its owner between mkdir and writing it) before it counts as dead. */
const PIDLESS_GRACE_MS = 10_000;

/** The claim's owner: a PID, or undefined when its file is missing, empty or garbled. */
function ownerOf(dir: string): number | undefined {
  try {
    const owner = Number(readFileSync(`${dir}/pid`, 'utf8').trim());
    return Number.isInteger(owner) && owner > 0 ? owner : undefined;
  } catch {
    return undefined;
  }
}

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
    const owner = ownerOf(dir);
    if (owner === undefined) {
      // Being written right now by its new owner, or left without a PID by one that died doing so.
      let age = 0;
      try {
        age = Date.now() - statSync(dir).mtimeMs;
      } catch {
        return false;
      }
      if (age < PIDLESS_GRACE_MS) return false;
    } else if (alive(owner)) {
      return false;
    }
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
  const owner = ownerOf(dir);
  return owner !== undefined && alive(owner);
}

/** Gives the claim up, if it is still this process's (a claim taken over meanwhile is left to its owner). */
export function releaseClaimDir(dir: string): void {
  if (ownerOf(dir) === process.pid) rmSync(dir, { recursive: true, force: true });
}
