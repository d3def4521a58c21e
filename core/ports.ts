import type { Readable } from 'node:stream';
import type { BackupLockState, BackupMetadata } from './domain/backups.js';
import type { Probe } from './domain/bootstrap.js';
import type { AgentRegistration, SeedLease } from './domain/election.js';
import type { GroupInstance } from './domain/instances.js';
import type { TerminationNotice } from './domain/lifecycle-events.js';
import type { InstanceFact } from './domain/reconcile.js';
import type { Member } from './domain/members.js';

/** Who this EC2 instance is, from the instance metadata service (IMDSv2). */
export interface InstanceIdentity {
  readonly instanceId: string;
  readonly region: string;
  readonly privateIp: string;
  readonly availabilityZone: string;
}

export interface IdentitySource {
  identity(): Promise<InstanceIdentity>;
}

/** The Auto Scaling group and its instances, as the AWS APIs describe them. */
export interface InstanceInventory {
  /** The group an instance belongs to, or undefined when it belongs to none. */
  groupOf(instanceId: string): Promise<string | undefined>;
  /** Every instance of the group with its lifecycle state and private IP. Throws when the group does not exist. */
  instancesOf(groupName: string): Promise<GroupInstance[]>;
  /** EC2's state of each instance it still knows (terminated ones stay visible for about an hour). */
  instanceFacts(instanceIds: readonly string[]): Promise<Map<string, InstanceFact>>;
}

/** Status of one member, from the Maintenance Status RPC. */
export interface MemberStatus {
  readonly endpoint: string;
  readonly memberId: string;
  readonly clusterId: string;
  readonly leaderId: string;
  readonly revision: string;
  readonly raftIndex: string;
  readonly raftTerm: string;
  readonly version: string;
  readonly dbSize: number;
  /** Bytes of the database logically in use: dbSize minus the free pages a defragmentation would give back. */
  readonly dbSizeInUse: number;
  readonly isLearner: boolean;
}

/** A running etcd cluster, reached through the client URLs it was opened with. */
export interface EtcdCluster {
  /** Members of the cluster, only when it has quorum; throws EtcdUnavailableError otherwise. */
  listMembers(): Promise<{ clusterId: string; members: Member[] }>;
  /** Status of the member serving `endpoint` (one of the URLs the cluster was opened with). */
  status(endpoint: string): Promise<MemberStatus>;
  /**
   * The cluster version the member at `endpoint` reports ("3.6.0": the oldest minor any member runs, which
   * decides the data's format), or undefined when it reports none yet (the cluster is still deciding).
   */
  clusterVersion(endpoint: string): Promise<string | undefined>;
  /** etcd's HashKV of the member at `endpoint`: a hash of its keys up to `revision` (its content at that revision). */
  hashKV(endpoint: string, revision: string): Promise<{ revision: string; hash: string; compactRevision: string }>;
  close(): void;
}

/**
 * One member's own view, through its own client URL, that needs no quorum: what a lone survivor can still say.
 * etcd 3.4 serves MemberList and Status from the answering member's local state.
 */
export interface EtcdLocalView {
  /** Whether a linearizable read through the opened endpoints succeeds, i.e. the cluster has a quorum. */
  hasQuorum(): Promise<boolean>;
  /** MemberList as the member at `endpoint` knows it locally (serializable), with or without a quorum. */
  localMembers(endpoint: string): Promise<{ clusterId: string; memberId: string; members: Member[] }>;
}

/** A raised etcd alarm: NOSPACE (the space quota is reached: writes refused) or CORRUPT. */
export interface EtcdAlarm {
  readonly memberId: string;
  readonly alarm: string;
}

/** etcd's maintenance calls (compaction, defragmentation, alarms). */
export interface EtcdMaintenance {
  /** The alarms raised on any member (one member answers for the cluster). */
  alarms(): Promise<EtcdAlarm[]>;
  /** Drops the key-value history before `revision` (the keys' latest values stay), waiting until it is applied. */
  compact(revision: string, timeoutMs: number): Promise<void>;
  /**
   * Whether the member at `endpoint` is defragmenting now (etcd's `etcd_disk_defrag_inflight` gauge), or
   * undefined when it does not say (a release before 3.5.1, or /metrics unreachable).
   */
  defragmenting(endpoint: string): Promise<boolean | undefined>;
  /** Defragments the member at `endpoint` (blocks its reads and writes meanwhile), within `timeoutMs`. */
  defragment(endpoint: string, timeoutMs: number): Promise<void>;
  /** Disarms the NOSPACE alarm of every member. */
  disarmNoSpace(): Promise<void>;
}

/** Membership changes, each safe to repeat: "already gone" and "already there" are answers, not errors. */
export interface EtcdMembership {
  /** Live cluster (quorum) with its members and which of them answered Status; or why not. */
  probe(): Promise<Probe>;
  addLearner(peerUrl: string): Promise<{ memberId: string; members: Member[] }>;
  remove(memberId: string): Promise<'removed' | 'not-found'>;
  promote(memberId: string): Promise<'promoted' | 'not-ready' | 'not-a-learner'>;
  /** Asks the leader (reached at `leaderEndpoint`) to hand leadership to `targetId` (MoveLeader). */
  moveLeader(leaderEndpoint: string, targetId: string): Promise<void>;
}

/** The seed lease and the agents' registrations, kept beside the backups. */
export interface SeedCoordinator {
  register(registration: AgentRegistration): Promise<void>;
  registrations(): Promise<AgentRegistration[]>;
  readLease(): Promise<SeedLease | undefined>;
  /**
   * Writes a lease held by `holder` until `expiresAt`, only if the stored lease is still `expected` (by ETag;
   * undefined: only if there is none). Returns the new lease, or undefined when another agent won the race.
   */
  writeLease(holder: string, expiresAt: number, expected: string | undefined): Promise<SeedLease | undefined>;
}

/**
 * The lock that keeps backups of one group single-flight: one small object, written only by compare-and-swap,
 * so of several invocations acting on the same read exactly one holds it.
 */
export interface BackupLock {
  readonly key: string;
  /** The stored lock, or undefined when there is none. */
  read(): Promise<BackupLockState | undefined>;
  /**
   * Writes a lock held by `holder` until `expiresAt`, only if the stored lock is still `expected` (by ETag;
   * undefined: only if there is none). Returns the new lock, or undefined when the write did not land as asked
   * (another invocation wrote first, or the expected lock was released meanwhile; or an SDK retry of our own
   * write found it already landed): the caller reads again.
   */
  write(holder: string, expiresAt: number, expected: string | undefined): Promise<BackupLockState | undefined>;
  /** Deletes the lock if it is still `lock` (by ETag); 'not-held' when it is gone or another holder's. */
  release(lock: BackupLockState): Promise<'released' | 'not-held'>;
}

/** The lifecycle hook's side of Auto Scaling: release or extend an instance held in Terminating:Wait. */
export interface LifecycleActions {
  /** CONTINUE the termination. "No active lifecycle action" means it was completed before: done. */
  complete(notice: TerminationNotice): Promise<'completed' | 'already-completed'>;
  /** Restart the hook's heartbeat timeout, so the instance waits while a removal is retried. */
  heartbeat(notice: TerminationNotice): Promise<void>;
}

/**
 * What an instance tells Auto Scaling about itself: its launching lifecycle action (it stays in Pending:Wait
 * until its member votes) and its health, which decides whether the group replaces it.
 */
export interface InstanceLifecycle {
  /** The instance's lifecycle state in its group (`Pending:Wait`, `InService`, ...); undefined outside any group. */
  state(instanceId: string): Promise<string | undefined>;
  /** Completes the launching lifecycle action. "No active lifecycle action" means it was completed before, or there is none. */
  completeLaunch(instanceId: string, result: 'CONTINUE' | 'ABANDON'): Promise<'completed' | 'no-action'>;
  /** Restarts the launching hook's heartbeat timeout while the member is still catching up. */
  heartbeatLaunch(instanceId: string): Promise<void>;
  /** SetInstanceHealth Unhealthy, not waiting for the grace period: the group replaces the instance. */
  setUnhealthy(instanceId: string): Promise<void>;
}

/**
 * CloudFormation's rolling update waits for a signal from each new instance (WaitOnResourceSignals): success
 * once its member votes, failure when it gave up, which stops the update and rolls it back.
 */
export interface StackSignals {
  signal(instanceId: string, status: 'SUCCESS' | 'FAILURE'): Promise<'sent' | 'not-waiting'>;
}

/** A snapshot being read from one member: the bytes, and the revision in the stream's header if etcd sent one (none does up to 3.7). */
export interface SnapshotStream {
  readonly stream: Readable;
  /** Known once the first message arrived; undefined when etcd sent no header (every release up to 3.7). */
  headerRevision(): string | undefined;
}

/** etcd's authentication store (RBAC): what the control plane sets up once per cluster. */
export interface EtcdAuth {
  authEnabled(): Promise<boolean>;
  /** Adds the role unless it exists. */
  ensureRole(name: string): Promise<void>;
  /** Adds the user without a password (only a client certificate with its name as CN can be it) unless it exists, and grants it `roles`. */
  ensureUser(name: string, roles: readonly string[]): Promise<void>;
  /** Turns authentication on (a no-op when it is on). */
  enableAuth(): Promise<void>;
}

export interface EtcdSnapshots {
  /** Maintenance.Snapshot from the member at `endpoint`, with a deadline long enough for the whole stream. */
  snapshot(endpoint: string, timeoutMs: number): Promise<SnapshotStream>;
}

/** Where backups live (S3): objects under a folder, snapshots uploaded in parts, metadata written last. */
export interface SnapshotStore {
  readonly bucket: string;
  /** Every object under `folder`, following every page of the listing. */
  list(folder: string): Promise<Array<{ key: string; lastModified: number }>>;
  readMetadata(key: string): Promise<BackupMetadata>;
  /** Multipart upload of a stream of unknown length; on any error the upload is aborted, then the error rethrown. */
  upload(key: string, body: Readable): Promise<void>;
  writeMetadata(key: string, metadata: BackupMetadata): Promise<void>;
  /** Deletes the keys (in batches of 1000); returns how many were deleted. */
  delete(keys: readonly string[]): Promise<number>;
  download(key: string): Promise<Readable>;
}
