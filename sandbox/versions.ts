import { Etcd3 } from 'etcd3';
import { parseEtcdVersion, type EtcdVersion } from '../core/domain/versions.js';
import { etcd3Credentials, etcdHttpGet } from '../testbed/pki.js';

/** What one member says at GET /version: the release it runs and the cluster version it knows. */
export interface ReportedVersions {
  readonly member: string;
  readonly server: string;
  /** "3.6.0", or undefined while the cluster has not decided it. */
  readonly cluster: string | undefined;
}

const minor = (v: EtcdVersion) => `${v.major}.${v.minor}`;
const older = (a: EtcdVersion, b: EtcdVersion) => a.major < b.major || (a.major === b.major && a.minor < b.minor);

/** The versions every current member reports (members listed by whichever endpoint answers first). */
export async function memberVersions(endpoints: readonly string[]): Promise<ReportedVersions[]> {
  const client = new Etcd3({ hosts: [...endpoints], ...etcd3Credentials(), dialTimeout: 1000, defaultCallOptions: () => ({ deadline: Date.now() + 1500 }) });
  let members: Array<{ name: string; clientURLs: string[] }>;
  try {
    members = (await client.cluster.memberList({ linearizable: true })).members;
  } finally {
    client.close();
  }
  const answers = await Promise.all(
    members.map(async (m) => {
      const url = m.clientURLs[0];
      if (url === undefined) return undefined;
      try {
        const body = (await etcdHttpGet(new URL('/version', url).href)) as { etcdserver?: string; etcdcluster?: string };
        if (typeof body.etcdserver !== 'string') return undefined;
        const cluster = typeof body.etcdcluster === 'string' && body.etcdcluster !== 'not_decided' ? body.etcdcluster : undefined;
        return { member: m.name || url, server: body.etcdserver, cluster };
      } catch {
        return undefined; // starting, stopping or just removed: no evidence either way
      }
    }),
  );
  return answers.filter((a) => a !== undefined);
}

/**
 * Broken promises in one look at the members: etcd raises the cluster version only once every member runs the
 * new minor, so a cluster version newer than any member's own release is a member running on data or
 * protocol it does not know. Pure.
 */
export function clusterVersionViolations(reported: readonly ReportedVersions[]): string[] {
  const out: string[] = [];
  for (const r of reported) {
    const cluster = r.cluster === undefined ? undefined : parseEtcdVersion(r.cluster);
    if (!cluster) continue;
    for (const other of reported) {
      const server = parseEtcdVersion(other.server);
      if (server && older(server, cluster)) out.push(`${r.member} reported cluster version ${r.cluster} while ${other.member} ran etcd ${other.server}`);
    }
  }
  return out;
}

/** The cluster version most members agree on right now, as "3.6". */
export function agreedClusterMinor(reported: readonly ReportedVersions[]): string | undefined {
  const counts = new Map<string, number>();
  for (const r of reported) {
    const v = r.cluster === undefined ? undefined : parseEtcdVersion(r.cluster);
    if (v) counts.set(minor(v), (counts.get(minor(v)) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
}

/**
 * Samples the members' versions in the background while a rollout runs, keeping every violation and every
 * change of the cluster version (with the releases the members ran at that moment), for the timeline.
 */
export class VersionWatch {
  readonly violations = new Set<string>();
  readonly changes: Array<{ readonly at: number; readonly clusterVersion: string; readonly servers: readonly string[] }> = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(endpoints: () => readonly string[], onChange: (clusterVersion: string, servers: readonly string[]) => void) {
    this.loop = (async () => {
      while (this.running) {
        const reported = await memberVersions(endpoints()).catch(() => []);
        for (const v of clusterVersionViolations(reported)) this.violations.add(v);
        const agreed = agreedClusterMinor(reported);
        if (agreed !== undefined && agreed !== this.changes.at(-1)?.clusterVersion) {
          const servers = reported.map((r) => `${r.member}=${r.server}`);
          this.changes.push({ at: Date.now(), clusterVersion: agreed, servers });
          onChange(agreed, servers);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
