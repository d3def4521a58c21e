import { describe, expect, it } from 'vitest';
import { FAULT_WEIGHTS, FaultStream, HOLD_MS, describeFault, splitBrain } from '../../sandbox/chaos-plan.js';

describe('FaultStream', () => {
  it('draws the same faults from the same seed, and other faults from another', () => {
    expect(new FaultStream(7).take(20)).toEqual(new FaultStream(7).take(20));
    expect(new FaultStream(7).take(20)).not.toEqual(new FaultStream(8).take(20));
  });

  it('draws every kind of fault, holds within bounds, and a stream continues where a shorter one stopped', () => {
    const faults = new FaultStream(1).take(400);
    expect(new Set(faults.map((f) => f.kind))).toEqual(new Set(Object.keys(FAULT_WEIGHTS)));
    const holds = faults.flatMap((f) => ('holdMs' in f ? [f.holdMs] : []));
    expect(Math.min(...holds)).toBeGreaterThanOrEqual(HOLD_MS.min);
    expect(Math.max(...holds)).toBeLessThanOrEqual(HOLD_MS.max);
    expect(new FaultStream(1).take(3)).toEqual(faults.slice(0, 3));
  });

  it('refuses a seed that is not an integer', () => {
    expect(() => new FaultStream(1.5)).toThrow(/integer/);
  });

  it('describes faults for the record', () => {
    expect(describeFault({ kind: 'partition', target: 2, holdMs: 12_000 })).toBe('partition #2 for 12s');
    expect(describeFault({ kind: 'total-loss' })).toBe('total-loss');
  });
});

describe('splitBrain', () => {
  it.each([
    ['one cluster with quorum', [{ instanceId: 'a', clusterId: 'c1', quorum: true }, { instanceId: 'b', clusterId: 'c1', quorum: true }], undefined],
    ['a cut-off member of another cluster without quorum', [{ instanceId: 'a', clusterId: 'c1', quorum: true }, { instanceId: 'b', clusterId: 'c2', quorum: false }], undefined],
    ['nobody has quorum', [{ instanceId: 'a', clusterId: 'c1', quorum: false }], undefined],
    [
      'two clusters with quorum',
      [{ instanceId: 'a', clusterId: 'c1', quorum: true }, { instanceId: 'b', clusterId: 'c2', quorum: true }],
      'two clusters accepted writes at once: c1 (a) and c2 (b)',
    ],
  ])('%s', (_name, samples, expected) => {
    expect(splitBrain(samples)).toBe(expected);
  });
});
