/** An instance of the etcd Auto Scaling group, joined with what EC2 knows of it. */
export interface GroupInstance {
  readonly instanceId: string;
  /** Auto Scaling lifecycle state: `Pending`, `InService`, `Terminating:Wait`, ... */
  readonly lifecycleState: string;
  readonly healthStatus: string;
  readonly availabilityZone: string;
  /** Undefined when EC2 no longer describes the instance (terminated and gone). */
  readonly privateIp: string | undefined;
  /** Epoch ms of the instance's launch (EC2 LaunchTime); undefined when EC2 no longer describes it. */
  readonly launchedAt?: number | undefined;
}

/**
 * Lifecycle states whose instances run (or are about to run) an etcd member. Terminating, detaching and
 * standby instances are on their way out or parked; they are never counted as peers.
 * https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-lifecycle.html
 */
const ACTIVE_STATES: ReadonlySet<string> = new Set(['Pending', 'Pending:Wait', 'Pending:Proceed', 'InService']);

export function isActive(instance: GroupInstance): boolean {
  return ACTIVE_STATES.has(instance.lifecycleState);
}

/** The instances that are (or will be) etcd peers and have an address to reach them at. */
export function activePeers(instances: readonly GroupInstance[]): Array<GroupInstance & { privateIp: string }> {
  return instances.filter((i): i is GroupInstance & { privateIp: string } => isActive(i) && i.privateIp !== undefined);
}

/** The scheme of etcd's URLs: `https` when etcd runs with TLS (ETCD_AWS_TLS=on). */
export type UrlScheme = 'http' | 'https';

/** etcd client URLs of the given instances (`<scheme>://<private-ip>:<port>`), in a stable order. */
export function clientUrls(instances: readonly { readonly privateIp: string }[], clientPort: number, scheme: UrlScheme = 'http'): string[] {
  return instances.map((i) => `${scheme}://${i.privateIp}:${clientPort}`).sort();
}

/**
 * The instances whose etcd may hold the cluster's data right now: the active ones, and those Auto Scaling
 * holds in Terminating:Wait, which still run (a health-check replacement terminates and launches at once, so
 * the member with the newest data may be the one waiting). Discovery probes them and the seed election
 * counts them, so no one founds or restores beside a running member.
 */
export function runningPeers(instances: readonly GroupInstance[]): Array<GroupInstance & { privateIp: string }> {
  return instances.filter(
    (i): i is GroupInstance & { privateIp: string } => (isActive(i) || i.lifecycleState === 'Terminating:Wait') && i.privateIp !== undefined,
  );
}

/** States of an instance on its way out of the group, or parked: it joins nothing and founds nothing. */
export function isLeaving(instance: GroupInstance | undefined): boolean {
  return instance !== undefined && /^(Terminating|Detaching|Detached|EnteringStandby|Standby)/.test(instance.lifecycleState);
}
