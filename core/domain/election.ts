import { runningPeers, type GroupInstance } from './instances.js';

/** What an agent publishes about itself while it boots (an object in the backup bucket). */
export interface AgentRegistration {
  readonly instanceId: string;
  /** True once the agent has, or is about to create, etcd data (seeding, restoring, joined, restarted). */
  readonly hasData: boolean;
  /** Epoch milliseconds of the last write; registrations are heartbeats. */
  readonly at: number;
  /**
   * What the agent's etcd serves, refreshed while it runs: whether it has a quorum (a voter with a leader
   * that answers a linearizable read; a learner whose leader answers), and since when that has been so.
   * What a survivor weighs before forcing a cluster, and what tells reconcile a member is cut off.
   */
  readonly serving?: ServingState | undefined;
}

export interface ServingState {
  readonly clusterId: string;
  readonly memberId: string;
  readonly quorum: boolean;
  /** Epoch ms since which `quorum` has had this value without interruption. */
  readonly since: number;
}

/**
 * The other instances whose agent says, within `freshMs`, that its etcd serves `clusterId` and that the
 * cluster lives on: with quorum; or without it only for less than `graceMs` (a leader change, a slow disk:
 * one momentary probe is not a dead cluster); or as a member the caller's own member list does not know
 * (the membership moved on without the caller, which is then the one cut off). Pure.
 */
export function servingElsewhere(
  selfId: string,
  clusterId: string,
  registrations: readonly AgentRegistration[],
  now: number,
  freshMs: number,
  view: { readonly knownMemberIds?: ReadonlySet<string>; readonly graceMs?: number } = {},
): string[] {
  return registrations
    .filter((r) => {
      const s = r.serving;
      if (r.instanceId === selfId || s?.clusterId !== clusterId || now - r.at > freshMs) return false;
      const recentlyLost = view.graceMs !== undefined && now - s.since < view.graceMs;
      const unknownMember = view.knownMemberIds !== undefined && !view.knownMemberIds.has(s.memberId);
      return s.quorum || recentlyLost || unknownMember;
    })
    .map((r) => r.instanceId);
}

/** The seed lease: who may found (or restore) the cluster, until when. Replaced only by compare-and-swap. */
export interface SeedLease {
  readonly holder: string;
  readonly expiresAt: number;
  /** The object's ETag: the version a compare-and-swap must name. */
  readonly etag: string;
}

export type SeedPrecondition =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'peer-has-data' | 'peer-not-registered' | 'peer-registration-stale'; readonly instanceId: string };

/**
 * An agent may try to found the cluster only when every other running instance of the group (active, or held
 * in Terminating:Wait) says, recently, that it has no etcd data. An instance with data (a member that is merely down) or an agent that is not
 * running keeps everyone waiting instead of founding a second cluster beside it; the group's health checks
 * replace an instance whose agent never comes up, which ends the wait. Pure.
 */
export function seedPrecondition(
  selfId: string,
  instances: readonly GroupInstance[],
  registrations: readonly AgentRegistration[],
  now: number,
  freshMs: number,
): SeedPrecondition {
  const byId = new Map(registrations.map((r) => [r.instanceId, r]));
  for (const peer of runningPeers(instances)) {
    if (peer.instanceId === selfId) continue;
    const r = byId.get(peer.instanceId);
    if (!r) return { ok: false, reason: 'peer-not-registered', instanceId: peer.instanceId };
    if (r.hasData) return { ok: false, reason: 'peer-has-data', instanceId: peer.instanceId };
    if (now - r.at > freshMs) return { ok: false, reason: 'peer-registration-stale', instanceId: peer.instanceId };
  }
  return { ok: true };
}

export type LeaseAction =
  | { readonly kind: 'create' }
  | { readonly kind: 'renew'; readonly etag: string }
  | { readonly kind: 'take-over'; readonly etag: string; readonly from: string }
  | { readonly kind: 'wait'; readonly holder: string; readonly expiresAt: number };

/**
 * What to do about the seed lease: create it when there is none, renew our own, take over one that expired
 * (its holder stopped renewing: it died or gave up), else wait. Every write is conditional on the version
 * read (If-None-Match / If-Match), so of several agents acting on the same read exactly one succeeds. Pure.
 */
export function leaseAction(selfId: string, lease: SeedLease | undefined, now: number): LeaseAction {
  if (!lease) return { kind: 'create' };
  if (lease.holder === selfId) return { kind: 'renew', etag: lease.etag };
  if (lease.expiresAt <= now) return { kind: 'take-over', etag: lease.etag, from: lease.holder };
  return { kind: 'wait', holder: lease.holder, expiresAt: lease.expiresAt };
}
