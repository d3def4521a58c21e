/**
 * etcd versions and the upgrade rules etcd documents: one minor version at a time, from a recent enough
 * patch release of the older minor, never backwards. https://etcd.io/docs/v3.6/upgrades/upgrading-etcd/
 */

/** An etcd release, as `etcd --version`, Status and backup metadata report it ("3.6.16"). */
export interface EtcdVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

/** The oldest etcd the agent runs on: 3.4 is out of etcd's support, has no etcdutl and no snapshot header. */
export const OLDEST_SUPPORTED: EtcdVersion = { major: 3, minor: 5, patch: 0 };

/**
 * The newest minor version this project is tested on (testbed/etcd-builds). A newer one is started, with a
 * warning: etcd keeps its API compatible within 3.x, but nothing here has proven the agent against it.
 */
export const NEWEST_TESTED_MINOR = 7;

/**
 * Before members of a minor version may be joined by the next one, they must all run at least this patch
 * release (etcd's upgrade checklists): 3.5 → 3.6 needs 3.5.32 (v2store and learner fixes, upgrade_3_6),
 * 3.6 → 3.7 needs 3.6.11 (upgrade_3_7).
 */
const UPGRADE_SOURCE_MINIMUM: ReadonlyMap<string, EtcdVersion> = new Map([
  ['3.5', { major: 3, minor: 5, patch: 32 }],
  ['3.6', { major: 3, minor: 6, patch: 11 }],
]);

/** The first etcdutl release with `snapshot restore --bump-revision/--mark-compacted` (etcd PR 16165, in 3.5.10). */
export const BUMP_REVISION_SINCE: EtcdVersion = { major: 3, minor: 5, patch: 10 };

/** "3.6.16" (also "v3.6.16", "3.7.0-rc.0", or the first line of `etcd --version`) → its numbers; undefined when none. */
export function parseEtcdVersion(text: string): EtcdVersion | undefined {
  const m = /(?:^|[^\d.])v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

export function formatVersion(v: EtcdVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

export function minorOf(v: EtcdVersion): string {
  return `${v.major}.${v.minor}`;
}

/** Negative when a is older, 0 when equal, positive when newer. */
export function compareVersions(a: EtcdVersion, b: EtcdVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/** Minor versions apart (b minus a), across majors as if minors were consecutive within one major. */
function minorsApart(a: EtcdVersion, b: EtcdVersion): number {
  return a.major === b.major ? b.minor - a.minor : (b.major - a.major) * 1000;
}

/** The path etcd supports from one version to another, for error messages: "3.5 → 3.6 → 3.7". */
export function upgradePath(from: EtcdVersion, to: EtcdVersion): string {
  if (from.major !== to.major || to.minor <= from.minor) return `${minorOf(from)} → ${minorOf(to)}`;
  const steps: string[] = [];
  for (let minor = from.minor; minor <= to.minor; minor += 1) steps.push(`${from.major}.${minor}`);
  return steps.join(' → ');
}

export type LocalVersionCheck =
  | { readonly ok: true; readonly reason: 'tested' | 'newer-than-tested' }
  | { readonly ok: false; readonly reason: 'too-old'; readonly detail: string };

/** Whether the agent runs on this etcd at all. Pure. */
export function checkLocalVersion(local: EtcdVersion): LocalVersionCheck {
  if (compareVersions(local, OLDEST_SUPPORTED) < 0) {
    return {
      ok: false,
      reason: 'too-old',
      detail:
        `etcd ${formatVersion(local)} is not supported (etcd-aws needs ${minorOf(OLDEST_SUPPORTED)} or newer, whose etcdutl restores backups); ` +
        `upgrade a running cluster one minor version at a time: ${upgradePath(local, OLDEST_SUPPORTED)}`,
    };
  }
  return local.major === 3 && local.minor > NEWEST_TESTED_MINOR ? { ok: true, reason: 'newer-than-tested' } : { ok: true, reason: 'tested' };
}

/** A member of the cluster and the etcd version it reported (Status). */
export interface MemberVersion {
  readonly name: string;
  readonly version: EtcdVersion;
}

export type JoinVersionCheck =
  | { readonly ok: true; readonly reason: 'same-minor' | 'one-minor-upgrade' | 'rollback-within-cluster-version' | 'no-member-version-known' }
  | {
      readonly ok: false;
      readonly reason: 'minor-skip' | 'downgrade' | 'upgrade-source-too-old';
      /** Says both versions and what to do. */
      readonly detail: string;
    };

/**
 * Whether a new member running `local` may join members running these versions, by etcd's upgrade rules. Pure.
 *
 * The cluster version is the oldest minor any member runs, so: joining below it is a downgrade (etcd refuses
 * to run older than its cluster version, and a member that cannot start blocks nobody but wastes the slot);
 * joining more than one minor above it skips a minor version (unsupported: "will likely fail"); joining one
 * minor above it is an upgrade, allowed only once every member of the older minor runs the patch release
 * etcd's checklist requires. Joining at the cluster version is always fine, also while other members already
 * run the next minor (a rolled-back rollout). Members that did not report a version are not counted.
 */
export function checkJoinVersion(local: EtcdVersion, members: readonly MemberVersion[]): JoinVersionCheck {
  if (members.length === 0) return { ok: true, reason: 'no-member-version-known' };
  const byAge = [...members].sort((a, b) => compareVersions(a.version, b.version));
  const oldest = byAge[0] as MemberVersion;
  const newest = byAge[byAge.length - 1] as MemberVersion;
  const apart = minorsApart(oldest.version, local);
  const describe = (m: MemberVersion) => `${m.name} runs ${formatVersion(m.version)}`;
  if (apart < 0) {
    return {
      ok: false,
      reason: 'downgrade',
      detail:
        `this instance runs etcd ${formatVersion(local)}, older than every member of the cluster (${describe(oldest)}): ` +
        `etcd does not run below its cluster version ${minorOf(oldest.version)}. Launch instances with etcd ${minorOf(oldest.version)}.x or newer ` +
        '(the stack parameter etcdVersion)',
    };
  }
  if (apart > 1) {
    return {
      ok: false,
      reason: 'minor-skip',
      detail:
        `this instance runs etcd ${formatVersion(local)} but ${describe(oldest)}: etcd upgrades one minor version at a time ` +
        `(${upgradePath(oldest.version, local)}). Roll every member to etcd ${oldest.version.major}.${oldest.version.minor + 1}.x first`,
    };
  }
  if (apart === 1) {
    const minimum = UPGRADE_SOURCE_MINIMUM.get(minorOf(oldest.version));
    const behind = minimum ? byAge.filter((m) => m.version.minor === oldest.version.minor && compareVersions(m.version, minimum) < 0) : [];
    if (minimum && behind.length > 0) {
      return {
        ok: false,
        reason: 'upgrade-source-too-old',
        detail:
          `this instance runs etcd ${formatVersion(local)} but ${behind.map(describe).join(', ')}: etcd's upgrade to ${minorOf(local)} ` +
          `needs every ${minorOf(oldest.version)} member at ${formatVersion(minimum)} or later first. Roll the cluster to the newest ` +
          `${minorOf(oldest.version)} patch release, then to ${minorOf(local)}`,
      };
    }
    return { ok: true, reason: 'one-minor-upgrade' };
  }
  return newest.version.minor > local.minor || newest.version.major > local.major
    ? { ok: true, reason: 'rollback-within-cluster-version' }
    : { ok: true, reason: 'same-minor' };
}

export type RestoreVersionCheck =
  | { readonly ok: true; readonly reason: 'same-minor' | 'older-data' | 'version-unknown' }
  | { readonly ok: false; readonly reason: 'newer-data'; readonly detail: string };

/**
 * Whether `local`'s etcdutl may restore a backup whose data was written at `dataVersion` (the cluster version
 * when the backup was taken; the leader's version for backups that did not record it). Pure.
 *
 * Older data restores and starts on any newer etcd (measured here: a 3.5 snapshot on 3.6 and on 3.7). Newer
 * data does not: 3.6 restores a 3.7 snapshot, then refuses to start ("version 3.7.0 is not supported"), so
 * the founder would crash on every start. Falling back to an older backup instead would throw away data, so
 * the answer is a refusal that names the version to run.
 */
export function checkRestoreVersion(local: EtcdVersion, dataVersion: EtcdVersion | undefined, key: string): RestoreVersionCheck {
  if (dataVersion === undefined) return { ok: true, reason: 'version-unknown' };
  const apart = minorsApart(dataVersion, local);
  if (apart < 0) {
    return {
      ok: false,
      reason: 'newer-data',
      detail:
        `backup ${key} holds data of etcd ${minorOf(dataVersion)} (${formatVersion(dataVersion)}) and this instance runs etcd ${formatVersion(local)}: ` +
        `etcd does not start on data of a newer version. Launch instances with etcd ${minorOf(dataVersion)}.x or newer (the stack parameter etcdVersion); ` +
        'no older backup is restored instead, that would lose the newer data',
    };
  }
  return apart === 0 ? { ok: true, reason: 'same-minor' } : { ok: true, reason: 'older-data' };
}
