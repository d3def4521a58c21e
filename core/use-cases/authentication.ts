import { COMMON_NAMES } from '../domain/issuance.js';
import { membersWithoutTls } from '../domain/members.js';
import type { Log } from '../logger.js';
import type { EtcdAuth, EtcdCluster } from '../ports.js';

/** etcd's superuser role and user: etcd refuses `auth enable` without a `root` user holding the `root` role. */
const ROOT = 'root';

/**
 * The etcd users the control plane needs, with the only role etcd allows them: membership changes,
 * snapshots, defragmentation and alarms are root's alone in etcd's RBAC. `root` is the functions' identity
 * (the issuer gives its certificate only to this stack's functions); `etcd-aws-agent` is the agents'. Neither
 * has a password: etcd takes the user from the client certificate's CN, which only the issuer writes.
 */
export const CONTROL_PLANE_USERS: readonly string[] = [COMMON_NAMES.root, COMMON_NAMES.client];

/**
 * Turns etcd's authentication on once per cluster, after adding the control plane's users. Idempotent and
 * safe to race: every agent runs it when its etcd serves (a cluster founded, restored from a backup of a
 * plaintext cluster, or migrated), and each step tolerates what another already did. Until it is on, only a
 * certificate of the cluster's client CA reaches etcd at all (`--client-cert-auth`), and the issuer gives
 * those to the control plane alone. While a member launched before TLS is left (a stack migrating to TLS),
 * it waits: that member's agent talks plaintext without a user, and etcd would refuse it every change.
 */
export async function ensureAuthentication(
  etcd: EtcdAuth & Pick<EtcdCluster, 'listMembers'>,
  log: Log,
): Promise<'enabled' | 'already-enabled' | { waiting: readonly string[] }> {
  if (await etcd.authEnabled()) return 'already-enabled';
  const plaintext = membersWithoutTls((await etcd.listMembers()).members);
  if (plaintext.length > 0) return { waiting: plaintext.map((m) => m.name || m.id) };
  await etcd.ensureRole(ROOT);
  for (const user of CONTROL_PLANE_USERS) await etcd.ensureUser(user, [ROOT]);
  await etcd.enableAuth();
  log.info('enabled etcd authentication', { users: CONTROL_PLANE_USERS, reason: 'authentication was off: a new cluster, or one restored from a backup taken without it' });
  return 'enabled';
}
