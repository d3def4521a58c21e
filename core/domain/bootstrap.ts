import { COMMON_NAMES } from './issuance.js';
import { activePeers, isLeaving, type GroupInstance } from './instances.js';
import { memberOfInstance, quorumOf, urlHost, type Member } from './members.js';
import { checkJoinVersion, parseEtcdVersion, type EtcdVersion, type MemberVersion } from './versions.js';

/** What the local etcd data dir holds (read from its WAL without starting etcd). */
export type LocalData =
  | { readonly kind: 'none' }
  | { readonly kind: 'member'; readonly memberId: string; readonly clusterId: string }
  | { readonly kind: 'unreadable'; readonly reason: string };

/** What probing the peers' client URLs found. */
export type Probe =
  /** A cluster with quorum: a linearizable read succeeded. */
  | {
      readonly kind: 'live';
      readonly clusterId: string;
      readonly members: readonly Member[];
      readonly healthyMemberIds: readonly string[];
      /** The etcd version each member that answered Status runs, by member ID. */
      readonly memberVersions: Readonly<Record<string, string>>;
    }
  /** Some etcd answered, but no quorum: a cluster exists and may come back. */
  | { readonly kind: 'no-quorum'; readonly answered: readonly string[] }
  /** Nothing answered on any peer's client port. */
  | { readonly kind: 'silent' };

export interface Self {
  readonly instanceId: string;
  readonly privateIp: string;
}

export interface StaleMember {
  readonly member: Member;
  readonly reason: 'named-after-this-instance' | 'has-this-instance-ip' | 'instance-left-group';
}

/** The agent's decision, with the reason tests and logs report. */
export type BootstrapPlan =
  | {
      readonly kind: 'restart';
      readonly reason: 'member-of-live-cluster' | 'local-data-no-live-cluster';
      readonly isLearner: boolean;
    }
  | {
      readonly kind: 'join';
      readonly reason: 'no-local-data' | 'local-data-of-removed-member' | 'local-data-of-other-cluster';
      readonly removeFirst: readonly StaleMember[];
      readonly clearLocalData: boolean;
      readonly clusterId: string;
    }
  | { readonly kind: 'seed'; readonly reason: 'no-cluster-no-local-data' }
  | { readonly kind: 'wait'; readonly reason: 'cluster-without-quorum' | 'removal-would-break-quorum' | 'instance-leaving-group' }
  | { readonly kind: 'refuse'; readonly reason: 'unreadable-local-data' | 'version-incompatible'; readonly detail: string };

/**
 * Members to remove before this instance joins: its own earlier incarnations (by name, or by peer URL on
 * its IP, e.g. after a lost data dir or a crash between MemberAdd and start), always first; then members
 * whose instance is no longer an active instance of the group, each only while the healthy voting members
 * still form a quorum of what remains. A member that answers is never removed for being outside the group:
 * it runs (in Standby, Detached, held in Terminating:Wait for the lifecycle handler, or missing from a lagging
 * listing), and removing it would take a working voter away, or, in Terminating:Wait, the member with the
 * newest data before the handler's final backup. The members kept are reported with why. Pure.
 */
export function staleMembers(
  self: Self,
  members: readonly Member[],
  instances: readonly GroupInstance[],
  healthyMemberIds: ReadonlySet<string>,
): { remove: StaleMember[]; kept: Array<{ member: Member; reason: 'removal-would-break-quorum' | 'member-answers' }>; selfRemovalBreaksQuorum: boolean } {
  const remove: StaleMember[] = [];
  for (const m of members) {
    if (m.name === self.instanceId) remove.push({ member: m, reason: 'named-after-this-instance' });
    else if (m.peerUrls.some((u) => urlHost(u) === self.privateIp)) remove.push({ member: m, reason: 'has-this-instance-ip' });
  }
  const removed = new Set(remove.map((r) => r.member.id));
  let voting = members.filter((m) => !m.isLearner && !removed.has(m.id));
  const healthy = (set: readonly Member[]) => set.filter((v) => healthyMemberIds.has(v.id)).length;
  // Only removing one of this instance's own voting members changes the quorum; adding a learner does not.
  const removesVoter = remove.some((r) => !r.member.isLearner);
  const selfRemovalBreaksQuorum = removesVoter && voting.length > 0 && healthy(voting) < quorumOf(voting.length);

  const others = activePeers(instances).filter((i) => i.instanceId !== self.instanceId);
  const owned = new Set(others.map((i) => memberOfInstance(members, i)?.member.id));
  const kept: Array<{ member: Member; reason: 'removal-would-break-quorum' | 'member-answers' }> = [];
  for (const m of members) {
    if (owned.has(m.id) || removed.has(m.id)) continue;
    if (healthyMemberIds.has(m.id)) {
      kept.push({ member: m, reason: 'member-answers' });
      continue;
    }
    const after = voting.filter((v) => v.id !== m.id);
    if (m.isLearner || healthy(after) >= quorumOf(after.length)) {
      remove.push({ member: m, reason: 'instance-left-group' });
      voting = after;
    } else {
      kept.push({ member: m, reason: 'removal-would-break-quorum' });
    }
  }
  return { remove, kept, selfRemovalBreaksQuorum };
}

/** The versions of the members that answered, for the join check (a member without a parsable version is left out). */
export function memberVersionsOf(probe: Extract<Probe, { kind: 'live' }>): MemberVersion[] {
  return probe.members.flatMap((m) => {
    const text = probe.memberVersions[m.id];
    const version = text === undefined ? undefined : parseEtcdVersion(text);
    return version ? [{ name: m.name || m.id, version }] : [];
  });
}

/**
 * What to do at boot, from the local data, the probe, the group and the etcd version this instance runs.
 * Pure; every branch is table-tested. Local data is never discarded unless a live cluster proves it stale, a
 * new cluster is only founded when nothing answers and there is no local data (the election then picks one
 * founder), and a member is only added when its etcd version may join the members' (checkJoinVersion).
 */
export function decideBootstrap(input: {
  self: Self;
  local: LocalData;
  probe: Probe;
  instances: readonly GroupInstance[];
  etcdVersion: EtcdVersion;
}): BootstrapPlan {
  const plan = decideFromData(input);
  // An instance on its way out (Terminating, Standby, Detaching) restarts a member it still is, which keeps the
  // quorum until the lifecycle hook removes it, but never adds a member or founds a cluster it will not stay in.
  const leaving = isLeaving(input.instances.find((i) => i.instanceId === input.self.instanceId));
  return leaving && (plan.kind === 'join' || plan.kind === 'seed') ? { kind: 'wait', reason: 'instance-leaving-group' } : plan;
}

function decideFromData(input: Parameters<typeof decideBootstrap>[0]): BootstrapPlan {
  const { self, local, probe } = input;
  if (local.kind === 'unreadable') {
    return { kind: 'refuse', reason: 'unreadable-local-data', detail: local.reason };
  }
  if (probe.kind !== 'live') {
    if (local.kind === 'member') return { kind: 'restart', reason: 'local-data-no-live-cluster', isLearner: false };
    if (probe.kind === 'no-quorum') return { kind: 'wait', reason: 'cluster-without-quorum' };
    return { kind: 'seed', reason: 'no-cluster-no-local-data' };
  }
  if (local.kind === 'member' && local.clusterId === probe.clusterId) {
    const mine = probe.members.find((m) => m.id === local.memberId);
    if (mine) return { kind: 'restart', reason: 'member-of-live-cluster', isLearner: mine.isLearner };
  }
  const versions = checkJoinVersion(input.etcdVersion, memberVersionsOf(probe));
  if (!versions.ok) return { kind: 'refuse', reason: 'version-incompatible', detail: versions.detail };
  const reason =
    local.kind === 'none' ? 'no-local-data' : local.clusterId === probe.clusterId ? 'local-data-of-removed-member' : 'local-data-of-other-cluster';
  const { remove, selfRemovalBreaksQuorum } = staleMembers(self, probe.members, input.instances, new Set(probe.healthyMemberIds));
  if (selfRemovalBreaksQuorum) return { kind: 'wait', reason: 'removal-would-break-quorum' };
  return { kind: 'join', reason, removeFirst: remove, clearLocalData: local.kind === 'member', clusterId: probe.clusterId };
}

/** How etcd is started: its own ETCD_* settings. */
export interface EtcdLaunch {
  readonly state: 'new' | 'existing';
  /** `name=peerURL` pairs; for a join, every current member plus this one. */
  readonly initialCluster: readonly string[];
  readonly token: string;
}

/** initial-cluster for a join: every member as the cluster lists it (unstarted ones have no name yet) plus self. */
export function joinInitialCluster(self: Self, members: readonly Member[], selfPeerUrl: string): string[] {
  const entries: string[] = [];
  for (const m of members) {
    if (m.peerUrls.includes(selfPeerUrl)) continue;
    for (const u of m.peerUrls) entries.push(`${m.name}=${u}`);
  }
  entries.push(`${self.instanceId}=${selfPeerUrl}`);
  return entries;
}

/** How much history etcd keeps and how large its database may grow (the agent's validated settings). */
export interface EtcdSpace {
  readonly quotaBytes: number;
  /** `retention` as etcd reads it in that mode (periodic: `1h`, `30m`, or whole hours; revision: a count); `0` is off. */
  readonly compaction: { readonly mode: 'periodic' | 'revision'; readonly retention: string };
}

/** The node's certificate files etcd reads (on every handshake: a renewal needs no restart). */
export interface EtcdTlsFiles {
  /** The CA of peer certificates (CN etcd-peer), the only one the peer port trusts. */
  readonly peerCaFile: string;
  /** The CA of client certificates (users, the agent, the functions), the only one the client port trusts. */
  readonly clientCaFile: string;
  readonly peer: { readonly certFile: string; readonly keyFile: string };
  readonly server: { readonly certFile: string; readonly keyFile: string };
  /**
   * ETCD_AWS_TLS=migrating, the step of a plaintext cluster towards TLS: the client port serves plaintext and
   * TLS (etcd tells them apart on one port) and the peer URL stays plaintext, so the members launched before
   * still reach this one; the peer certificate is there for dialing the TLS peer URLs of members launched with
   * `on`, the next step. Undefined or false: TLS only.
   */
  readonly migrating?: boolean | undefined;
}

/**
 * The environment etcd runs with: passed-through ETCD_* tuning, then the settings the agent owns. Pure.
 * With `tls`, both ports speak TLS and require a certificate of their own CA (`--client-cert-auth`,
 * `--peer-client-cert-auth`), and the peer port only a peer certificate's CN; /health and /metrics stay plain
 * HTTP on the metrics port, where they reveal no data. With `tls.migrating` the client port serves plaintext
 * beside TLS and the peer URL stays plaintext (see EtcdTlsFiles.migrating).
 * etcd reads `ETCD_<FLAG>` as `--<flag>`: the space settings become `--quota-backend-bytes`,
 * `--auto-compaction-mode` and `--auto-compaction-retention`, set on every start, so every member compacts
 * and enforces the same quota whether or not the environment named them.
 */
export function etcdEnvironment(options: {
  self: Self;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  /** Where etcd serves /health and /metrics in plain HTTP, apart from the client port (the load balancer's check). */
  metricsPort: number;
  launch: EtcdLaunch;
  space: EtcdSpace;
  inherited: Record<string, string | undefined>;
  /** Undefined: plaintext (ETCD_AWS_TLS=off). */
  tls?: EtcdTlsFiles | undefined;
}): Record<string, string> {
  const { self, launch } = options;
  const passThrough = Object.entries(options.inherited).filter(
    (e): e is [string, string] => e[0].startsWith('ETCD_') && !AGENT_OWN.has(e[0]) && !e[0].startsWith('ETCD_AWS_') && e[1] !== undefined,
  );
  const { tls } = options;
  const scheme = tls && !tls.migrating ? 'https' : 'http';
  const client = tls?.migrating
    ? `http://${self.privateIp}:${options.clientPort},https://${self.privateIp}:${options.clientPort}`
    : `${scheme}://${self.privateIp}:${options.clientPort}`;
  const peer = `${scheme}://${self.privateIp}:${options.peerPort}`;
  return {
    ...Object.fromEntries(passThrough),
    ETCD_NAME: self.instanceId,
    ETCD_DATA_DIR: options.dataDir,
    ETCD_LISTEN_CLIENT_URLS: client,
    ETCD_ADVERTISE_CLIENT_URLS: client,
    ETCD_LISTEN_PEER_URLS: peer,
    ETCD_INITIAL_ADVERTISE_PEER_URLS: peer,
    // Health and metrics without a client certificate, once the client port requires one (#18).
    ETCD_LISTEN_METRICS_URLS: `http://${self.privateIp}:${options.metricsPort}`,
    ETCD_INITIAL_CLUSTER: launch.initialCluster.join(','),
    ETCD_INITIAL_CLUSTER_STATE: launch.state,
    ETCD_INITIAL_CLUSTER_TOKEN: launch.token,
    // Refuse a member add that would leave the cluster without a healthy quorum (etcd's own check).
    ETCD_STRICT_RECONFIG_CHECK: 'true',
    ETCD_QUOTA_BACKEND_BYTES: String(options.space.quotaBytes),
    ETCD_AUTO_COMPACTION_MODE: options.space.compaction.mode,
    ETCD_AUTO_COMPACTION_RETENTION: options.space.compaction.retention,
    ...(tls ? tlsEnvironment(tls) : {}),
  };
}

function tlsEnvironment(tls: EtcdTlsFiles): Record<string, string> {
  return {
    ETCD_CERT_FILE: tls.server.certFile,
    ETCD_KEY_FILE: tls.server.keyFile,
    ETCD_TRUSTED_CA_FILE: tls.clientCaFile,
    ETCD_CLIENT_CERT_AUTH: 'true',
    ETCD_PEER_CERT_FILE: tls.peer.certFile,
    ETCD_PEER_KEY_FILE: tls.peer.keyFile,
    ETCD_PEER_TRUSTED_CA_FILE: tls.peerCaFile,
    ETCD_PEER_CLIENT_CERT_AUTH: 'true',
    // etcd refuses a peer connection whose certificate has another CN (a client certificate of the peer CA has none).
    ETCD_PEER_CERT_ALLOWED_CN: COMMON_NAMES.peer,
  };
}

/**
 * The environment of the one etcd process that recovers from a permanent loss of quorum: the same settings
 * plus etcd's `--force-new-cluster`. Pure; only ever used for that process, never stored.
 */
export function forceNewClusterEnvironment(env: Record<string, string>): Record<string, string> {
  return { ...env, ETCD_FORCE_NEW_CLUSTER: 'true' };
}

/**
 * Variables the agent reads itself (not etcd flags, etcd would warn about them), and the force flag, which
 * only the agent's quorum recovery may set: left in a unit file it would re-force on every restart.
 */
const AGENT_OWN = new Set(['ETCD_ASG_NAME', 'ETCD_ENDPOINTS', 'ETCD_CLIENT_PORT', 'ETCD_PEER_PORT', 'ETCD_FORCE_NEW_CLUSTER']);
