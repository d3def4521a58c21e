import { Etcd3, type ICallable, type IHashKVRequest, type IMember, type IOptions, type ISnapshotResponse } from 'etcd3';
import { clientUrlsOfScheme, type Member } from '../domain/members.js';
import { EtcdBackoffError, EtcdUnavailableError, MembershipChangeTooSoonError, describeError } from '../errors.js';
import type { Probe } from '../domain/bootstrap.js';
import { refusedButAnswered } from '../domain/termination.js';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import type { EtcdAlarm, EtcdAuth, EtcdCluster, EtcdLocalView, EtcdMaintenance, EtcdMembership, EtcdSnapshots, MemberStatus, SnapshotStream } from '../ports.js';

/** A client certificate and the CA to trust, PEM: for `https://` endpoints (#18). */
export interface EtcdTlsCredentials {
  readonly caPem: Buffer;
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
}

export interface EtcdClientOptions {
  readonly dialTimeoutMs: number;
  /** Deadline of every RPC, so a probe of a dead member fails fast instead of hanging. */
  readonly callTimeoutMs: number;
  /**
   * The client certificate for TLS endpoints, read each time a client is made (certificates are renewed
   * on disk); none for plaintext ones.
   */
  readonly tls?: (() => EtcdTlsCredentials) | undefined;
}

function clientOptions(hosts: readonly string[], options: EtcdClientOptions): IOptions {
  const tls = options.tls?.();
  return {
    hosts: [...hosts],
    dialTimeout: options.dialTimeoutMs,
    defaultCallOptions: () => ({ deadline: Date.now() + options.callTimeoutMs }),
    // Certificate authentication only: etcd takes the user from the certificate's CN, no password is sent.
    ...(tls ? { credentials: { rootCertificate: tls.caPem, certChain: tls.certPem, privateKey: tls.keyPem } } : {}),
  };
}

/**
 * A member as this client reaches it: its client URLs in the client's own scheme (clientUrlsOfScheme), so
 * every use case that dials a member from the list speaks the scheme its client was made for, also while
 * members launched with and without TLS run side by side.
 */
function toMember(m: IMember, scheme: 'http' | 'https'): Member {
  return { id: m.ID, name: m.name, peerUrls: m.peerURLs, clientUrls: clientUrlsOfScheme(m.clientURLs, scheme), isLearner: m.isLearner };
}

/** A key nobody writes: reading it linearizably proves the cluster has quorum without touching user data. */
const QUORUM_PROBE_KEY = '\u0000etcd-aws/quorum-probe';

/**
 * A request another member may serve instead: a learner refused it (it serves no linearizable read, member
 * change or linearizable MemberList), or it never left this client (no connection to that member: an
 * instance whose etcd has not started, or has stopped).
 */
function servedElsewhere(error: unknown): boolean {
  return /not supported for learner|No connection established/i.test(describeError(error));
}

/** The HTTP/2 flow-control window of a snapshot stream (see snapshot()): 1 MiB, where bench/ saw the gain end. */
const SNAPSHOT_WINDOW_BYTES = 1024 * 1024;

/** etcd's v3 API through the `etcd3` client; the only module that imports it. */
export class Etcd3Cluster implements EtcdAuth, EtcdCluster, EtcdLocalView, EtcdMaintenance, EtcdMembership, EtcdSnapshots {
  private made: Etcd3 | undefined;

  constructor(
    private readonly endpoints: readonly string[],
    private readonly options: EtcdClientOptions,
  ) {
    if (endpoints.length === 0) throw new EtcdUnavailableError('no etcd endpoints to connect to');
  }

  /** The scheme of the URLs this cluster was opened with (all alike: callers build them with one). */
  private get scheme(): 'http' | 'https' {
    return this.endpoints[0]?.startsWith('https://') ? 'https' : 'http';
  }

  /**
   * The pooled client, made at its first use: reading the TLS credentials may fail (no certificate yet), and
   * that must fail the call that needed them, never the code that only opened the cluster.
   */
  private get client(): Etcd3 {
    this.made ??= new Etcd3(clientOptions(this.endpoints, this.options));
    return this.made;
  }

  /**
   * GET on a member's HTTP endpoint (`/version`, `/metrics`) through its client URL, with the client
   * certificate under TLS (etcd serves them on the client port, behind the same client-certificate auth).
   */
  private async httpGet(endpoint: string, pathname: string): Promise<{ status: number; body: string }> {
    const url = new URL(pathname, endpoint);
    const tls = url.protocol === 'https:' ? this.options.tls?.() : undefined;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const ms = this.options.callTimeoutMs;
    return new Promise((resolve, reject) => {
      const req = send(url, tls ? { ca: tls.caPem, cert: tls.certPem, key: tls.keyPem } : {}, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          clearTimeout(deadline);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', fail);
      });
      // A deadline for the whole exchange, like the RPCs': a member that trickles its answer cannot hold the
      // caller (reconcile's defragmentation guard, a backup's cluster version) past it.
      const deadline = setTimeout(() => req.destroy(new Error(`no complete answer from ${url.href} within ${ms} ms`)), ms);
      const fail = (error: Error) => {
        clearTimeout(deadline);
        reject(error);
      };
      req.on('error', fail);
      req.end();
    });
  }

  /**
   * Runs a request through the pool; when the member it reached is a learner (the pool picks any endpoint,
   * and the control plane's endpoints include the learners of a rollout or a scale-out) or could not be
   * reached at all, through each endpoint alone until a voter serves it. Only those move on: any other
   * answer is the cluster's, and stands.
   */
  private async onVoter<T>(request: (client: Etcd3) => Promise<T>): Promise<T> {
    try {
      return await request(this.client);
    } catch (error) {
      if (!servedElsewhere(error) || this.endpoints.length < 2) throw error;
      let last: unknown = error;
      for (const endpoint of this.endpoints) {
        const single = new Etcd3(clientOptions([endpoint], this.options));
        try {
          return await request(single);
        } catch (next) {
          if (!servedElsewhere(next)) throw next;
          last = next;
        } finally {
          single.close();
        }
      }
      throw last;
    }
  }

  async authEnabled(): Promise<boolean> {
    return (await this.onVoter((c) => c.auth.authStatus())).enabled;
  }

  async ensureRole(name: string): Promise<void> {
    await this.onVoter((c) => c.auth.roleAdd({ name })).catch((error: unknown) => {
      if (!/role name already exists/i.test(describeError(error))) throw error;
    });
  }

  async ensureUser(name: string, roles: readonly string[]): Promise<void> {
    await this.onVoter((c) => c.auth.userAdd({ name, password: '', options: { no_password: true } })).catch((error: unknown) => {
      if (!/user name already exists/i.test(describeError(error))) throw error;
    });
    for (const role of roles) await this.onVoter((c) => c.auth.userGrantRole({ user: name, role }));
  }

  async enableAuth(): Promise<void> {
    await this.onVoter((c) => c.auth.authEnable());
  }

  async listMembers(): Promise<{ clusterId: string; members: Member[] }> {
    try {
      // etcd 3.4 serves MemberList from the answering member's local state, even when that member has
      // lost quorum (the request's `linearizable` flag only exists from 3.5 on). A linearizable read needs
      // a quorum (ReadIndex), so it tells a live cluster from a lone survivor on every version.
      await this.onVoter((c) => c.get(QUORUM_PROBE_KEY).exists());
    } catch (error) {
      throw new EtcdUnavailableError(
        `no etcd member with quorum answered through ${this.endpoints.join(', ')}: ${describeError(error)}`,
        { cause: error },
      );
    }
    try {
      const out = await this.onVoter((c) => c.cluster.memberList({ linearizable: true }));
      return {
        clusterId: out.header.cluster_id,
        members: out.members.map((m) => toMember(m, this.scheme)),
      };
    } catch (error) {
      throw new EtcdUnavailableError(
        `cannot list etcd members through ${this.endpoints.join(', ')}: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  async hasQuorum(): Promise<boolean> {
    try {
      await this.onVoter((c) => c.get(QUORUM_PROBE_KEY).exists());
      return true;
    } catch {
      return false;
    }
  }

  async localMembers(endpoint: string): Promise<{ clusterId: string; memberId: string; members: Member[] }> {
    // One connection to that member alone: the answer is its own local view, not whichever member the pool picks.
    const single = new Etcd3(clientOptions([endpoint], this.options));
    try {
      const out = await single.cluster.memberList({ linearizable: false });
      return { clusterId: out.header.cluster_id, memberId: out.header.member_id, members: out.members.map((m) => toMember(m, this.scheme)) };
    } catch (error) {
      throw new EtcdUnavailableError(`etcd member at ${endpoint} did not list its members: ${describeError(error)}`, { cause: error });
    } finally {
      single.close();
    }
  }

  async status(endpoint: string): Promise<MemberStatus> {
    // Status describes the member that answers, so it needs a connection to that member alone.
    const single = new Etcd3(clientOptions([endpoint], this.options));
    try {
      const s = await single.maintenance.status();
      return {
        endpoint,
        memberId: s.header.member_id,
        clusterId: s.header.cluster_id,
        leaderId: s.leader,
        revision: s.header.revision,
        raftIndex: s.raftIndex,
        raftTerm: s.raftTerm,
        version: s.version,
        dbSize: Number(s.dbSize),
        // etcd 3.4+ answers it; an older member's 0 would read as "everything free", so take the size then.
        dbSizeInUse: Number(s.dbSizeInUse) > 0 ? Number(s.dbSizeInUse) : Number(s.dbSize),
        isLearner: s.isLearner,
      };
    } catch (error) {
      throw new EtcdUnavailableError(`etcd member at ${endpoint} did not answer Status: ${describeError(error)}`, {
        cause: error,
      });
    } finally {
      single.close();
    }
  }

  async clusterVersion(endpoint: string): Promise<string | undefined> {
    // Only etcd's HTTP /version says it (gRPC's Status gives the server version alone).
    try {
      const res = await this.httpGet(endpoint, '/version');
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      const body = JSON.parse(res.body) as { etcdcluster?: unknown };
      return typeof body.etcdcluster === 'string' && body.etcdcluster !== 'not_decided' ? body.etcdcluster : undefined;
    } catch (error) {
      throw new EtcdUnavailableError(`etcd member at ${endpoint} did not say its cluster version: ${describeError(error)}`, { cause: error });
    }
  }

  async hashKV(endpoint: string, revision: string): Promise<{ revision: string; hash: string; compactRevision: string }> {
    const single = new Etcd3(clientOptions([endpoint], this.options));
    try {
      // etcd3 1.1.2's `maintenance.hashKV` calls a gRPC method named `hashKV`, which the generated client does
      // not have (it names it `HashKV` and `hashKv`): the call always fails. Its connection pool is called
      // directly with the method's proto name instead.
      const pool = (single as unknown as { pool: Pick<ICallable<unknown>, 'exec'> }).pool;
      // The typings say strings; the uint32 hash arrives as a number.
      const out = await pool.exec<{ hash: string | number; compact_revision: string | number }>('Maintenance', 'HashKV', { revision } satisfies IHashKVRequest);
      return { revision, hash: String(out.hash), compactRevision: String(out.compact_revision) };
    } catch (error) {
      throw new EtcdUnavailableError(`etcd member at ${endpoint} did not hash its keys at revision ${revision}: ${describeError(error)}`, { cause: error });
    } finally {
      single.close();
    }
  }

  async probe(): Promise<Probe> {
    try {
      const { clusterId, members } = await this.listMembers();
      const answered = await Promise.all(
        members.map(async (m) => {
          const url = m.clientUrls[0];
          if (url === undefined) return undefined;
          const status = await this.status(url).catch(() => undefined);
          return status?.memberId === m.id ? status : undefined;
        }),
      );
      const healthy = answered.filter((s) => s !== undefined);
      return {
        kind: 'live',
        clusterId,
        members,
        healthyMemberIds: healthy.map((s) => s.memberId),
        memberVersions: Object.fromEntries(healthy.map((s) => [s.memberId, s.version])),
      };
    } catch {
      // No quorum. A member that answers Status still proves a cluster exists (it may regain quorum); so does
      // one that refuses this client's handshake or identity (a certificate expired or of another CA, a
      // scheme it does not serve: a plaintext member for a TLS agent): it runs, and only its silence may
      // ever lead to founding a cluster.
      const answers = await Promise.allSettled(this.endpoints.map((e) => this.status(e)));
      const answered = this.endpoints.filter((_, i) => {
        const a = answers[i];
        return a?.status === 'fulfilled' || (a?.status === 'rejected' && refusedButAnswered(describeError(a.reason)));
      });
      return answered.length > 0 ? { kind: 'no-quorum', answered } : { kind: 'silent' };
    }
  }

  async addLearner(peerUrl: string): Promise<{ memberId: string; members: Member[] }> {
    try {
      const out = await this.onVoter((c) => c.cluster.memberAdd({ peerURLs: [peerUrl], isLearner: true }));
      return { memberId: out.member.ID, members: out.members.map((m) => toMember(m, this.scheme)) };
    } catch (error) {
      throw new EtcdUnavailableError(`cannot add ${peerUrl} as a learner: ${describeError(error)}`, { cause: error });
    }
  }

  async remove(memberId: string): Promise<'removed' | 'not-found'> {
    try {
      await this.onVoter((c) => c.cluster.memberRemove({ ID: memberId }));
      return 'removed';
    } catch (error) {
      const message = describeError(error);
      if (/member not found/i.test(message)) return 'not-found';
      if (/unhealthy cluster/i.test(message)) throw new MembershipChangeTooSoonError(`cannot remove member ${memberId} yet: ${message}`, { cause: error });
      // etcd3 retries a refusal a few times at once, which opens its circuit breaker for the member.
      if (/circuit breaker is open/i.test(message)) throw new EtcdBackoffError(`cannot remove member ${memberId} yet: ${message}`, { cause: error });
      throw new EtcdUnavailableError(`cannot remove member ${memberId}: ${message}`, { cause: error });
    }
  }

  async promote(memberId: string): Promise<'promoted' | 'not-ready' | 'not-a-learner'> {
    try {
      await this.onVoter((c) => c.cluster.memberPromote({ ID: memberId }));
      return 'promoted';
    } catch (error) {
      const message = describeError(error);
      if (/in sync with leader/i.test(message)) return 'not-ready';
      if (/can only promote a learner member/i.test(message)) return 'not-a-learner';
      throw new EtcdUnavailableError(`cannot promote member ${memberId}: ${message}`, { cause: error });
    }
  }

  async moveLeader(leaderEndpoint: string, targetId: string): Promise<void> {
    // MoveLeader is served only by the leader: ask it directly, not whichever member the pool picks.
    const single = new Etcd3(clientOptions([leaderEndpoint], this.options));
    try {
      await single.maintenance.moveLeader({ targetID: targetId });
    } catch (error) {
      throw new EtcdUnavailableError(`cannot move leadership from ${leaderEndpoint} to ${targetId}: ${describeError(error)}`, { cause: error });
    } finally {
      single.close();
    }
  }

  async alarms(): Promise<EtcdAlarm[]> {
    try {
      const out = await this.onVoter((c) => c.maintenance.alarm({ action: 'Get', memberID: 0, alarm: 'None' }));
      // etcd3 names them after its enum (Nospace, Corrupt); etcd and etcdctl say NOSPACE, CORRUPT.
      return out.alarms.map((a) => ({ memberId: a.memberID, alarm: a.alarm.toUpperCase() }));
    } catch (error) {
      throw new EtcdUnavailableError(`etcd did not list its alarms: ${describeError(error)}`, { cause: error });
    }
  }

  async compact(revision: string, timeoutMs: number): Promise<void> {
    try {
      // A physical compaction of a long history takes longer than an ordinary call: its own deadline.
      await this.onVoter((c) => c.kv.compact({ revision, physical: true }, { deadline: Date.now() + timeoutMs }));
    } catch (error) {
      // Compacting a revision already compacted is done, not an error.
      if (/compacted/i.test(describeError(error))) return;
      throw new EtcdUnavailableError(`etcd did not compact to revision ${revision}: ${describeError(error)}`, { cause: error });
    }
  }

  async defragmenting(endpoint: string): Promise<boolean | undefined> {
    try {
      const res = await this.httpGet(endpoint, '/metrics');
      if (res.status !== 200) return undefined;
      const gauge = /^etcd_disk_defrag_inflight\s+(\S+)/m.exec(res.body);
      return gauge ? Number(gauge[1]) > 0 : undefined;
    } catch {
      return undefined;
    }
  }

  async defragment(endpoint: string, timeoutMs: number): Promise<void> {
    // Defragment acts on the member that answers: a connection to that member alone.
    const single = new Etcd3(clientOptions([endpoint], this.options));
    try {
      await single.maintenance.defragment({ deadline: Date.now() + timeoutMs });
    } catch (error) {
      throw new EtcdUnavailableError(`etcd member at ${endpoint} did not finish defragmenting within ${timeoutMs} ms: ${describeError(error)}`, { cause: error });
    } finally {
      single.close();
    }
  }

  async disarmNoSpace(): Promise<void> {
    try {
      // As etcdctl's `alarm disarm`: each raised alarm is deactivated for the member that raised it.
      const raised = await this.alarms();
      for (const a of raised.filter((x) => x.alarm === 'NOSPACE')) {
        await this.onVoter((c) => c.maintenance.alarm({ action: 'Deactivate', memberID: a.memberId, alarm: 'Nospace' }));
      }
    } catch (error) {
      throw new EtcdUnavailableError(`etcd did not disarm its NOSPACE alarm: ${describeError(error)}`, { cause: error });
    }
  }

  async snapshot(endpoint: string, timeoutMs: number): Promise<SnapshotStream> {
    // HTTP/2's default 64 KiB window lets etcd send two of its 32 KiB chunks before it waits for this client's
    // window update: the snapshot then crawls at one round trip per 64 KiB (half etcdctl's speed, measured in
    // bench/). A window of SNAPSHOT_WINDOW_BYTES keeps etcd sending; it is also the most this stream buffers.
    const single = new Etcd3({ ...clientOptions([endpoint], this.options), grpcOptions: { 'grpc-node.flow_control_window': SNAPSHOT_WINDOW_BYTES } });
    let headerRevision: string | undefined;
    let responses: AsyncIterable<ISnapshotResponse>;
    try {
      responses = (await single.maintenance.snapshot({ deadline: Date.now() + timeoutMs })) as unknown as AsyncIterable<ISnapshotResponse>;
    } catch (error) {
      single.close();
      throw new EtcdUnavailableError(`etcd member at ${endpoint} did not start a snapshot: ${describeError(error)}`, { cause: error });
    }
    async function* bytes(): AsyncGenerator<Buffer> {
      let first = true;
      try {
        for await (const response of responses) {
          if (first) {
            first = false;
            // The protocol has a response header that could carry the snapshot's revision, but no etcd release
            // fills it (3.4 to 3.7, measured and read in etcd's maintenance server): it is read in case one does.
            // (etcd3's types say the header is always there; it is null.)
            const revision = (response as { header?: { revision?: string } | null }).header?.revision;
            if (revision !== undefined && revision !== '0') headerRevision = revision;
          }
          if (response.blob.length > 0) yield response.blob;
        }
      } finally {
        single.close();
      }
    }
    return { stream: Readable.from(bytes(), { objectMode: false }), headerRevision: () => headerRevision };
  }

  close(): void {
    this.made?.close();
  }
}
