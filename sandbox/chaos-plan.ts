import prand from 'pure-rand';

/**
 * The faults a chaos run draws. Targets are indexes into the group's instances sorted by private IP at the
 * moment the fault is applied (modulo their number), so a seed replays the same sequence on any run.
 */
export type ChaosFault =
  /** The instance dies at once: no hook; the group replaces it. */
  | { readonly kind: 'kill'; readonly target: number }
  /** Auto Scaling terminates it through the hook (a scale-in with replacement, an instance refresh). */
  | { readonly kind: 'terminate'; readonly target: number }
  /** It is cut off from its peers (still reaching AWS) for a while, then the network heals. */
  | { readonly kind: 'partition'; readonly target: number; readonly holdMs: number }
  /** Its processes freeze (SIGSTOP) for a while, its instance running; then they resume. */
  | { readonly kind: 'pause'; readonly target: number; readonly holdMs: number }
  /** The desired capacity goes 3 → 5, or 5 → 3 (scale-in through the hook). */
  | { readonly kind: 'scale' }
  /** A backup, as the schedule or an operator takes it. */
  | { readonly kind: 'backup' }
  /** The newest backup in S3 gets one byte flipped (its metadata still says it is valid). */
  | { readonly kind: 'corrupt-newest-backup' }
  /** Every instance dies with its disk: the group restores the newest valid backup. */
  | { readonly kind: 'total-loss' };

export type FaultKind = ChaosFault['kind'];

/** How often each fault is drawn, relative to the others. */
export const FAULT_WEIGHTS: Readonly<Record<FaultKind, number>> = {
  kill: 3,
  terminate: 3,
  partition: 3,
  pause: 2,
  scale: 2,
  backup: 2,
  'corrupt-newest-backup': 1,
  'total-loss': 1,
};

/** How long a partition or a pause is held: from a blip to longer than every grace period of the sandbox. */
export const HOLD_MS = { min: 2_000, max: 30_000 } as const;

/** A seeded stream of faults: the same seed draws the same faults, in the same order. */
export class FaultStream {
  private readonly rng: prand.RandomGenerator;

  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed)) throw new Error(`a chaos seed must be an integer (got ${seed})`);
    this.rng = prand.xoroshiro128plus(seed);
  }

  private int(min: number, max: number): number {
    return prand.unsafeUniformIntDistribution(min, max, this.rng);
  }

  next(): ChaosFault {
    const kinds = Object.entries(FAULT_WEIGHTS) as Array<[FaultKind, number]>;
    const total = kinds.reduce((sum, [, w]) => sum + w, 0);
    let pick = this.int(0, total - 1);
    const kind = kinds.find(([, w]) => (pick -= w) < 0)?.[0] ?? 'kill';
    const target = this.int(0, 6);
    const holdMs = this.int(HOLD_MS.min / 1000, HOLD_MS.max / 1000) * 1000;
    switch (kind) {
      case 'kill':
      case 'terminate':
        return { kind, target };
      case 'partition':
      case 'pause':
        return { kind, target, holdMs };
      default:
        return { kind };
    }
  }

  take(n: number): ChaosFault[] {
    return Array.from({ length: n }, () => this.next());
  }
}

/** One line per fault, for progress output and for the record. */
export function describeFault(fault: ChaosFault): string {
  switch (fault.kind) {
    case 'kill':
    case 'terminate':
      return `${fault.kind} #${fault.target}`;
    case 'partition':
    case 'pause':
      return `${fault.kind} #${fault.target} for ${fault.holdMs / 1000}s`;
    default:
      return fault.kind;
  }
}

/** What one look at every running member found: the cluster it serves, and whether it has a quorum there. */
export interface MemberSample {
  readonly instanceId: string;
  readonly clusterId: string;
  readonly quorum: boolean;
}

/**
 * The invariant that matters most: at no moment do two clusters accept writes. Members that answer a
 * linearizable read alone (their own quorum) in different clusters at the same look are two clusters. Pure.
 */
export function splitBrain(samples: readonly MemberSample[]): string | undefined {
  const byCluster = new Map<string, string[]>();
  for (const s of samples.filter((x) => x.quorum)) byCluster.set(s.clusterId, [...(byCluster.get(s.clusterId) ?? []), s.instanceId]);
  if (byCluster.size < 2) return undefined;
  return `two clusters accepted writes at once: ${[...byCluster].map(([c, ids]) => `${c} (${ids.join(', ')})`).join(' and ')}`;
}
