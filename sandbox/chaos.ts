import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { hexMemberId } from '../core/domain/members.js';
import type { BackupSummary } from '../core/use-cases/backup.js';
import { waitFor } from '../testbed/wait.js';
import { describeFault, splitBrain, type ChaosFault, type FaultStream, type MemberSample } from './chaos-plan.js';
import { CONVERGE_MS, corruptSnapshot } from './scenarios.js';
import { SequenceWriter, type AckedWrite } from './writer.js';
import type { Sandbox } from './world.js';
import { clientUrlOf, etcdClusterTls } from '../testbed/pki.js';

type Uploaded = Extract<BackupSummary, { status: 'uploaded' }>;

/** What one fault did and what the checks after it found. */
export interface ChaosStep {
  readonly fault: string;
  /** The instance it hit, where it hit one. */
  readonly instanceId?: string;
  readonly convergeMs: number | undefined;
  readonly violations: readonly string[];
  /** After a total loss: the backup restored and the acknowledged writes after it (the RPO). */
  readonly restore?: { readonly key: string; readonly writesLost: number };
}

export interface ChaosRunResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly steps: readonly ChaosStep[];
  readonly violations: readonly string[];
  readonly durationMs: number;
  readonly writes: { readonly acknowledged: number; readonly lost: number; readonly excused: number };
  /** How many looks at every member the split-brain watch took. */
  readonly samples: number;
}

export interface ChaosRunOptions {
  readonly sandbox: Sandbox;
  readonly faults: FaultStream;
  /** Faults to run; or, with `durationMs`, faults until that much time has passed. */
  readonly steps: number;
  readonly durationMs?: number;
  readonly say: (message: string) => void;
}

const CALLS = { dialTimeoutMs: 1000, callTimeoutMs: 2000 };
const SAMPLE_EVERY_MS = 500;

/** The group's instances, sorted by private IP: what a fault's target index points into. */
function targetOf(sandbox: Sandbox, index: number): string {
  const sorted = [...sandbox.instances()].sort((a, b) => a.privateIp.localeCompare(b.privateIp, 'en', { numeric: true }));
  if (sorted.length === 0) throw new Error('no instance to hit');
  return sorted[index % sorted.length]!.instanceId;
}

/**
 * Looks at every running member, each alone: the cluster it serves and whether a linearizable read through
 * it alone succeeds (its cluster has a quorum it is part of).
 */
async function sampleMembers(sandbox: Sandbox): Promise<MemberSample[]> {
  const nodes = sandbox.fleet.list().filter((n) => !sandbox.ended(n.instance.instanceId) && n.process?.running());
  const samples = await Promise.all(
    nodes.map(async (n): Promise<MemberSample | undefined> => {
      const url = clientUrlOf(n.instance.privateIp);
      const etcd = new Etcd3Cluster([url], { ...CALLS, ...etcdClusterTls() });
      try {
        const status = await etcd.status(url);
        if (status.isLearner) return undefined;
        return { instanceId: n.instance.instanceId, clusterId: hexMemberId(status.clusterId), quorum: status.leaderId !== '0' && (await etcd.hasQuorum()) };
      } catch {
        return undefined;
      } finally {
        etcd.close();
      }
    }),
  );
  return samples.filter((s): s is MemberSample => s !== undefined);
}

/**
 * One chaos run on a converged sandbox: sequence-numbered writes throughout, a watch for two clusters
 * accepting writes at once, then each fault in turn, each followed by convergence (bounded) and the
 * checks: same cluster (a new one only after a total loss, restored from the newest valid backup), no
 * acknowledged write lost except those after the restored backup.
 */
export async function runChaos(options: ChaosRunOptions): Promise<ChaosRunResult> {
  const { sandbox, say } = options;
  const started = Date.now();
  const violations: string[] = [];
  const steps: ChaosStep[] = [];
  const backups: Array<{ uploaded: Uploaded; corrupt: boolean }> = [];
  const excused = new Set<number>();
  let samples = 0;

  const initial = await sandbox.converge(CONVERGE_MS);
  let cluster = initial.clusterIds[0] ?? '';
  const backup = async (): Promise<Uploaded | undefined> => {
    const out = await sandbox.backup();
    if (out.status !== 'uploaded') return undefined;
    backups.push({ uploaded: out, corrupt: false });
    return out;
  };
  const writer = new SequenceWriter(() => sandbox.endpoints());
  writer.start();
  // Some data and a first backup: a total loss always has a valid backup to come back from.
  await waitFor('the first writes', () => writer.acknowledged.length >= 10, { timeoutMs: 30_000, intervalMs: 100 });
  await backup();

  const watch = { running: true, violation: undefined as string | undefined };
  const sampler = (async () => {
    while (watch.running) {
      const found = splitBrain(await sampleMembers(sandbox));
      samples += 1;
      if (found && !watch.violation) {
        watch.violation = `${new Date().toISOString()}: ${found}`;
        say(`VIOLATION ${watch.violation}`);
      }
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS));
    }
  })();

  try {
    for (let n = 0; ; n += 1) {
      if (options.durationMs === undefined ? n >= options.steps : Date.now() - started >= options.durationMs) break;
      const fault = options.faults.next();
      const label = describeFault(fault);
      say(`step ${n + 1}: ${label}`);
      const step = await runStep(fault);
      steps.push(step);
      say(`step ${n + 1}: ${label}${step.instanceId ? ` (${step.instanceId})` : ''}: ${step.violations.length === 0 ? 'ok' : step.violations.join('; ')}${step.convergeMs === undefined ? '' : `, converged in ${(step.convergeMs / 1000).toFixed(1)}s`}`);
      violations.push(...step.violations.map((v) => `step ${n + 1} (${label}): ${v}`));
      if (watch.violation) violations.push(watch.violation);
      if (violations.length > 0) break;
    }
  } finally {
    watch.running = false;
    await sampler;
    await writer.stop();
  }
  const final = await writer.check(sandbox.endpoints()).catch(() => undefined);
  // (the writer has stopped: every acknowledgement came before this read)
  const lost = final?.lost.filter((w) => !excused.has(w.seq)) ?? [];
  if (final === undefined) violations.push('the writes could not be read back at the end');
  else if (lost.length > 0) violations.push(`${lost.length} acknowledged writes lost at the end (first seq ${lost[0]!.seq})`);
  return {
    seed: options.faults.seed,
    ok: violations.length === 0,
    steps,
    violations,
    durationMs: Date.now() - started,
    writes: { acknowledged: writer.acknowledged.length, lost: lost.length, excused: excused.size },
    samples,
  };

  async function runStep(fault: ChaosFault): Promise<ChaosStep> {
    const stepViolations: string[] = [];
    let instanceId: string | undefined;
    let restore: ChaosStep['restore'];
    let expectRestoreOf: Uploaded | undefined;
    let faultEndAt = Date.now();
    switch (fault.kind) {
      case 'kill':
        instanceId = targetOf(sandbox, fault.target);
        await sandbox.kill([instanceId]);
        break;
      case 'terminate':
        instanceId = targetOf(sandbox, fault.target);
        await sandbox.terminate(instanceId);
        break;
      case 'partition': {
        instanceId = targetOf(sandbox, fault.target);
        const others = sandbox.instances().map((i) => i.instanceId).filter((id) => id !== instanceId);
        sandbox.partition([[instanceId], others]);
        try {
          await hold(fault.holdMs);
        } finally {
          sandbox.heal();
        }
        break;
      }
      case 'pause':
        instanceId = targetOf(sandbox, fault.target);
        sandbox.pause([instanceId]);
        try {
          await hold(fault.holdMs);
        } finally {
          sandbox.resume([instanceId]);
        }
        break;
      case 'scale':
        await sandbox.setCapacity((await sandbox.desiredCapacity()) === 3 ? 5 : 3);
        break;
      case 'backup':
        await backup();
        break;
      case 'corrupt-newest-backup': {
        // Always leave one valid backup: a corrupt one is skipped, never the only one there is.
        if (backups.filter((b) => !b.corrupt).length < 2) await backup();
        const newest = backups.at(-1);
        if (newest && !newest.corrupt) {
          await corruptSnapshot(sandbox.bucket, newest.uploaded.key);
          newest.corrupt = true;
          say(`corrupted ${newest.uploaded.key}`);
        }
        break;
      }
      case 'total-loss': {
        expectRestoreOf = [...backups].reverse().find((b) => !b.corrupt)?.uploaded;
        await sandbox.kill(sandbox.instances().map((i) => i.instanceId));
        faultEndAt = Date.now();
        break;
      }
    }
    const t0 = Date.now();
    let convergeMs: number | undefined;
    try {
      const converged = await sandbox.converge(CONVERGE_MS);
      convergeMs = Date.now() - t0;
      const now = converged.clusterIds[0] ?? '';
      if (expectRestoreOf) {
        const restored = sandbox.restores().restored.at(-1);
        if (restored !== expectRestoreOf.key) stepViolations.push(`expected a restore of ${expectRestoreOf.key} (the newest valid backup); got ${restored ?? 'none'}`);
        if (now === cluster) stepViolations.push('the cluster ID did not change after a restore');
      } else if (now !== cluster) {
        stepViolations.push(`the cluster changed from ${hexMemberId(cluster)} to ${hexMemberId(now)} without a total loss`);
      }
      cluster = now;
    } catch (error) {
      stepViolations.push(`did not converge within ${CONVERGE_MS / 1000}s: ${(error as Error).message.slice(0, 300)}`);
      return { fault: describeFault(fault), ...(instanceId ? { instanceId } : {}), convergeMs, violations: stepViolations };
    }
    // The writer goes on writing: only writes acknowledged before the read began must be in it (a
    // linearizable read reflects what completed before it was issued, not what completes while it runs).
    const readAt = Date.now();
    const check = await writer.check(sandbox.endpoints(), writer.acknowledged.filter((w) => w.ackedAt < readAt)).catch((error: unknown) => {
      stepViolations.push(`the writes could not be read back: ${(error as Error).message}`);
      return undefined;
    });
    if (check) {
      const newlyLost = check.lost.filter((w) => !excused.has(w.seq));
      const allowed = (w: AckedWrite) => expectRestoreOf !== undefined && w.revision > BigInt(expectRestoreOf.revision.before) && w.ackedAt <= faultEndAt;
      for (const w of newlyLost.filter(allowed)) excused.add(w.seq);
      const unexpected = newlyLost.filter((w) => !allowed(w));
      if (unexpected.length > 0) {
        // Which member misses them: each alone, a moment later (a real loss is missing everywhere).
        const perMember = await Promise.all(
          sandbox.endpoints().map(async (e) => {
            const again = await writer.check([e], unexpected).catch(() => undefined);
            return `${e}: ${again === undefined ? 'no answer' : `${again.lost.length} missing`}`;
          }),
        );
        stepViolations.push(`${unexpected.length} acknowledged writes lost (first seq ${unexpected[0]!.seq}; read again through each member alone: ${perMember.join(', ')})`);
      }
      if (expectRestoreOf) restore = { key: expectRestoreOf.key, writesLost: newlyLost.filter(allowed).length };
    }
    return { fault: describeFault(fault), ...(instanceId ? { instanceId } : {}), convergeMs, violations: stepViolations, ...(restore ? { restore } : {}) };
  }

  async function hold(ms: number): Promise<void> {
    const until = Date.now() + ms;
    await waitFor(`the fault's ${ms / 1000}s`, () => Date.now() >= until, { timeoutMs: ms + 5_000, intervalMs: 250 });
  }
}
