import { randomUUID } from 'node:crypto';
import {
  decideBootstrap,
  joinInitialCluster,
  type BootstrapPlan,
  type EtcdLaunch,
  type LocalData,
  type Probe,
  type Self,
} from '../domain/bootstrap.js';
import { leaseAction, seedPrecondition, type SeedLease } from '../domain/election.js';
import { clientUrls, runningPeers, type GroupInstance, type UrlScheme } from '../domain/instances.js';
import { hexMemberId } from '../domain/members.js';
import type { EtcdVersion } from '../domain/versions.js';
import { EtcdAwsError, describeError } from '../errors.js';
import type { Log } from '../logger.js';
import type { EtcdMembership, InstanceInventory, SeedCoordinator } from '../ports.js';
import type { SeedData } from './restore.js';

/** The agent will not start etcd here, and says why: its data dir cannot be trusted, or its release may not join. */
export class BootstrapRefusedError extends EtcdAwsError {
  constructor(
    message: string,
    readonly reason: 'unreadable-local-data' | 'version-incompatible' | 'etcd-crash-loop',
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface BootstrapTiming {
  /** How long a won seed lease stays valid without renewal. */
  readonly leaseMs: number;
  /** Pause between attempts while waiting (for a quorum, a peer, the lease). */
  readonly pollMs: number;
  /** A "no data" registration older than this does not count. */
  readonly freshMs: number;
}

export interface BootstrapDeps {
  readonly inventory: InstanceInventory;
  readonly openMembership: (endpoints: readonly string[]) => EtcdMembership & { close(): void };
  readonly seeds: SeedCoordinator;
  readonly localData: () => Promise<LocalData>;
  /** Moves the local data dir aside (never deletes it); returns where it went. */
  readonly setAsideLocalData: () => Promise<string>;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly log: Log;
  readonly clientPort: number;
  readonly peerPort: number;
  /** `https` when etcd runs with TLS: its client and peer URLs. */
  readonly scheme?: UrlScheme | undefined;
  readonly timing: BootstrapTiming;
  /** The etcd release this instance runs (`etcd --version`): whether it may join the members' versions. */
  readonly etcdVersion: EtcdVersion;
  /** Fills the empty data dir of a founder: the newest valid backup, or nothing when none ever existed. */
  readonly seedData: (target: { name: string; peerUrl: string; token: string }) => Promise<SeedData>;
}

export interface Observation {
  readonly instances: readonly GroupInstance[];
  readonly local: LocalData;
  readonly probe: Probe;
  readonly plan: BootstrapPlan;
}

/** What the agent ends up starting: etcd's launch settings, and the member to promote when it is a learner. */
export interface BootstrapOutcome {
  readonly plan: BootstrapPlan;
  readonly launch: EtcdLaunch;
  /** Set when this member starts as a learner and must be promoted once caught up. */
  readonly learnerId: string | undefined;
  /** Set when this agent founded the cluster: the lease to keep until etcd is up. */
  readonly lease: SeedLease | undefined;
  /** Set when this agent founded the cluster: restored from which backup, or empty and why. */
  readonly seeded: SeedData | undefined;
}

const peerUrlOf = (self: Self, peerPort: number, scheme: UrlScheme = 'http') => `${scheme}://${self.privateIp}:${peerPort}`;

/** Gathers the group, the local data and a probe of the peers, and decides. Changes nothing. */
export async function observe(self: Self, groupName: string, deps: BootstrapDeps): Promise<Observation> {
  const instances = await deps.inventory.instancesOf(groupName);
  const local = await deps.localData();
  // Instances held in Terminating:Wait still run: a member with data may be there (see runningPeers).
  const peers = runningPeers(instances).filter((i) => i.instanceId !== self.instanceId);
  const endpoints = clientUrls(peers, deps.clientPort, deps.scheme);
  let probe: Probe = { kind: 'silent' };
  if (endpoints.length > 0) {
    const etcd = deps.openMembership(endpoints);
    try {
      probe = await etcd.probe();
    } finally {
      etcd.close();
    }
  }
  return { instances, local, probe, plan: decideBootstrap({ self, local, probe, instances, etcdVersion: deps.etcdVersion }) };
}

/** Launch settings a plan leads to, as far as they are known before acting (for `plan` and logs). */
export function previewLaunch(self: Self, groupName: string, observation: Observation, peerPort: number, scheme: UrlScheme = 'http'): EtcdLaunch | undefined {
  const { plan, probe } = observation;
  const peerUrl = peerUrlOf(self, peerPort, scheme);
  switch (plan.kind) {
    case 'restart':
      return { state: 'existing', initialCluster: [`${self.instanceId}=${peerUrl}`], token: `${groupName}-existing` };
    case 'seed':
      return { state: 'new', initialCluster: [`${self.instanceId}=${peerUrl}`], token: `${groupName}-<new-uuid>` };
    case 'join': {
      const removed = new Set(plan.removeFirst.map((r) => r.member.id));
      const members = probe.kind === 'live' ? probe.members.filter((m) => !removed.has(m.id)) : [];
      return { state: 'existing', initialCluster: joinInitialCluster(self, members, peerUrl), token: `${groupName}-existing` };
    }
    default:
      return undefined;
  }
}

/**
 * Turns "this instance booted" into launch settings for etcd, acting on each decision and deciding again
 * until one leads to a start. Every step may be interrupted and repeated: a restarted agent observes the
 * result of what it did before (a member already added shows up as a stale member with its IP, removed and
 * added again; a data dir already set aside is simply gone).
 *
 * 1. observe (group, local data, probe) 2. decide 3. act: restart as is | remove stale members, set aside
 * foreign data, add self as learner | win the seed election | wait and go to 1.
 */
export async function bootstrap(self: Self, groupName: string, deps: BootstrapDeps): Promise<BootstrapOutcome> {
  const peerUrl = peerUrlOf(self, deps.peerPort, deps.scheme);
  let lastWaitReason = '';
  for (;;) {
    const observation = await observe(self, groupName, deps);
    const { plan, probe } = observation;
    // Say each distinct reason to wait once, not every poll.
    const waitLog = (reason: string, fields: Record<string, unknown> = {}) => {
      const key = `${reason} ${JSON.stringify(fields)}`;
      if (key !== lastWaitReason) deps.log.info('waiting', { reason, ...fields });
      lastWaitReason = key;
    };

    switch (plan.kind) {
      case 'refuse':
        throw new BootstrapRefusedError(
          plan.reason === 'unreadable-local-data'
            ? `refusing to start: ${plan.detail}. The data dir was left untouched; inspect it, then move it away ` +
                'to let this instance join (or restore) from scratch'
            : `refusing to join the cluster: ${plan.detail}. Nothing was changed`,
          plan.reason,
        );

      case 'restart': {
        deps.log.info('restarting from local data', { reason: plan.reason });
        await deps.seeds.register({ instanceId: self.instanceId, hasData: true, at: deps.now() });
        const local = observation.local;
        const learnerId = plan.isLearner && local.kind === 'member' ? local.memberId : undefined;
        return { plan, launch: previewLaunch(self, groupName, observation, deps.peerPort, deps.scheme) as EtcdLaunch, learnerId, lease: undefined, seeded: undefined };
      }

      case 'wait':
        await deps.seeds.register({ instanceId: self.instanceId, hasData: false, at: deps.now() });
        waitLog(plan.reason, probe.kind === 'no-quorum' ? { answered: probe.answered } : {});
        await deps.sleep(deps.timing.pollMs);
        continue;

      case 'join': {
        if (probe.kind !== 'live') continue;
        deps.log[lastWaitReason.startsWith('member add refused') ? 'debug' : 'info']('joining', {
          reason: plan.reason,
          clusterId: hexMemberId(plan.clusterId),
          remove: plan.removeFirst.map((r) => ({ memberId: hexMemberId(r.member.id), name: r.member.name, reason: r.reason })),
        });
        // Registered as holding data before any exists, so no peer can count this instance as empty.
        await deps.seeds.register({ instanceId: self.instanceId, hasData: true, at: deps.now() });
        const etcd = deps.openMembership(probe.members.flatMap((m) => m.clientUrls));
        try {
          for (const stale of plan.removeFirst) {
            const result = await etcd.remove(stale.member.id);
            deps.log.info('removed stale member', { memberId: hexMemberId(stale.member.id), name: stale.member.name, reason: stale.reason, result });
          }
          if (plan.clearLocalData) {
            const movedTo = await deps.setAsideLocalData();
            deps.log.warn('set aside local data of a removed member or another cluster', { reason: plan.reason, movedTo });
          }
          let added: { memberId: string; members: readonly import('../domain/members.js').Member[] };
          try {
            added = await etcd.addLearner(peerUrl);
          } catch (error) {
            // "too many learner members", "unhealthy cluster" (strict reconfig), a leader change: decide again.
            waitLog('member add refused', { error: describeError(error) });
            await deps.sleep(deps.timing.pollMs);
            continue;
          }
          deps.log.info('added as learner', { memberId: hexMemberId(added.memberId), peerUrl });
          return {
            plan,
            launch: { state: 'existing', initialCluster: joinInitialCluster(self, added.members, peerUrl), token: `${groupName}-existing` },
            learnerId: added.memberId,
            lease: undefined,
            seeded: undefined,
          };
        } finally {
          etcd.close();
        }
      }

      case 'seed': {
        await deps.seeds.register({ instanceId: self.instanceId, hasData: false, at: deps.now() });
        const now = deps.now();
        const precondition = seedPrecondition(
          self.instanceId,
          observation.instances,
          await deps.seeds.registrations(),
          now,
          deps.timing.freshMs,
        );
        if (!precondition.ok) {
          waitLog(`seed election: ${precondition.reason}`, { instanceId: precondition.instanceId });
          await deps.sleep(deps.timing.pollMs);
          continue;
        }
        const current = await deps.seeds.readLease();
        const action = leaseAction(self.instanceId, current, now);
        if (action.kind === 'wait') {
          waitLog('seed election: lease held by another instance', { holder: action.holder });
          await deps.sleep(deps.timing.pollMs);
          continue;
        }
        const lease = await deps.seeds.writeLease(self.instanceId, now + deps.timing.leaseMs, action.kind === 'create' ? undefined : action.etag);
        if (!lease) {
          waitLog('seed election: lost the lease race');
          await deps.sleep(deps.timing.pollMs);
          continue;
        }
        if (action.kind === 'take-over') deps.log.warn('took over an expired seed lease', { from: action.from });
        // Won. Probe once more: a cluster founded by a previous holder must be joined, not duplicated.
        const again = await observe(self, groupName, deps);
        if (again.plan.kind !== 'seed') continue;
        // Registered as holding data before the restore writes any: no one founds beside this instance.
        await deps.seeds.register({ instanceId: self.instanceId, hasData: true, at: deps.now() });
        // Still ours? The probe and the registration took time; a lease that expired meanwhile may have been
        // taken over, and its new holder may be founding right now.
        const stillHeld = await deps.seeds.readLease();
        if (stillHeld?.holder !== self.instanceId || stillHeld.etag !== lease.etag) {
          deps.log.warn('lost the seed lease before founding; deciding again', { holder: stillHeld?.holder });
          await deps.seeds.register({ instanceId: self.instanceId, hasData: false, at: deps.now() });
          continue;
        }
        deps.log.info('founding a new cluster', { reason: plan.reason });
        const token = `${groupName}-${randomUUID()}`;
        // A large restore outlasts the lease: keep renewing it meanwhile, and give the restore up if it is lost.
        const keeper = keepLease(self.instanceId, lease, deps);
        let seeded: SeedData;
        try {
          seeded = await deps.seedData({ name: self.instanceId, peerUrl, token });
        } finally {
          keeper.stop();
        }
        if (keeper.lost()) {
          // Someone else may be seeding: what this restore wrote must never start as a cluster.
          if ((await deps.localData()).kind !== 'none') {
            const movedTo = await deps.setAsideLocalData();
            deps.log.warn('set aside the data of a restore whose seed lease was lost', { movedTo });
          }
          throw new SeedLeaseLostError(
            'lost the seed lease while seeding (renewals failed, or it expired and was taken over): not starting what was restored; ' +
              'the agent starts again and joins (or founds) anew',
          );
        }
        return {
          plan,
          launch: { state: 'new', initialCluster: [`${self.instanceId}=${peerUrl}`], token },
          learnerId: undefined,
          lease: keeper.held(),
          seeded,
        };
      }
    }
  }
}

/** The seed lease was lost while this agent seeded: another agent may be founding, so this one must not. */
export class SeedLeaseLostError extends EtcdAwsError {
  constructor(message: string) {
    super(message, { retryable: true });
  }
}

/**
 * Renews a won seed lease every third of its duration until stopped. Lost when a renewal finds the lease
 * changed (compare-and-swap refused: it was taken over) or the lease expired without a renewal getting
 * through: from then on another agent may hold it.
 */
function keepLease(selfId: string, won: SeedLease, deps: BootstrapDeps): { stop(): void; lost(): boolean; held(): SeedLease } {
  let held = won;
  let taken = false;
  const state = { stopped: false };
  const stopped = () => state.stopped;
  void (async () => {
    while (!stopped() && !taken) {
      await deps.sleep(Math.max(deps.timing.leaseMs / 3, 100));
      if (stopped()) return;
      try {
        const renewed = await deps.seeds.writeLease(selfId, deps.now() + deps.timing.leaseMs, held.etag);
        if (renewed) held = renewed;
        else taken = true;
      } catch (error) {
        deps.log.warn('seed lease renewal failed; retrying', { error: describeError(error) });
      }
    }
  })();
  return {
    stop: () => {
      state.stopped = true;
    },
    lost: () => taken || deps.now() >= held.expiresAt,
    held: () => held,
  };
}

/**
 * Promotes this learner once it has caught up, retrying "not in sync" (and any failure) with capped
 * exponential backoff; stops when promoted, or when etcd says it is no longer a learner.
 */
export async function promoteWhenReady(
  memberId: string,
  openMembership: () => EtcdMembership & { close(): void },
  deps: { sleep: (ms: number) => Promise<void>; log: Log; stopped: () => boolean },
): Promise<boolean> {
  let delay = 200;
  while (!deps.stopped()) {
    const etcd = openMembership();
    try {
      const result = await etcd.promote(memberId);
      if (result === 'promoted' || result === 'not-a-learner') {
        deps.log.info('promoted to voting member', { memberId: hexMemberId(memberId), result });
        return true;
      }
      deps.log.debug('learner not caught up yet', { memberId: hexMemberId(memberId) });
    } catch (error) {
      deps.log.info('promotion failed, retrying', { memberId: hexMemberId(memberId), error: describeError(error) });
    } finally {
      etcd.close();
    }
    await deps.sleep(delay);
    delay = Math.min(delay * 2, 5000);
  }
  return false;
}
