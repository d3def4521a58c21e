import type { CertificateProfile, CsrRequest } from '../pki/x509.js';
import { isActive } from './instances.js';

/**
 * Who may get which certificate from the issuer (docs/ARCHITECTURE.md, "Certificates"). Pure: the issuer
 * function gathers the facts (the caller as STS vouches for it, the instance as Auto Scaling and EC2 describe
 * it, the CSR as read), this decides, and every refusal names what was wrong and what to do.
 */

/**
 * What a node asks for:
 * - `peer`: its peer listener's certificate, also the client certificate it dials peers with (peer CA);
 * - `server`: its client listener's certificate (client CA); etcd also dials its own gRPC gateway with it;
 * - `client`: the agent's client certificate for its own membership calls (client CA).
 * - `user`: a client certificate for one of the cluster's etcd users, named by the CSR's CN, for an operator
 *   who works on a node (`node-agent user-certificate`): the node already holds the agent's identity, which has
 *   etcd's root role, so it gains nothing by it.
 * And what the control plane's functions ask for:
 * - `root`: etcd's root user (client CA), for snapshots, defragmentation and member removal.
 */
export type NodeCertificateKind = 'peer' | 'server' | 'client';
export type CertificateKind = NodeCertificateKind | 'root' | 'user';
export const NODE_CERTIFICATE_KINDS: readonly NodeCertificateKind[] = ['peer', 'server', 'client'];
export const CERTIFICATE_KINDS: readonly CertificateKind[] = [...NODE_CERTIFICATE_KINDS, 'root', 'user'];

/**
 * Subject CNs the issuer writes; it never copies the CSR's. With client-certificate authentication etcd takes
 * the CN as the user name, so these are identities: `etcd-node` is a name no etcd user has (the certificate
 * etcd presents to its own gateway must grant nothing), `etcd-aws-agent` is the agent's user.
 */
export const COMMON_NAMES: Readonly<Record<Exclude<CertificateKind, 'user'>, string>> = {
  peer: 'etcd-peer',
  server: 'etcd-node',
  client: 'etcd-aws-agent',
  root: 'root',
};

/** The caller as STS identified it from the request it signed, and what that signature covered. */
export interface CallerFacts {
  /** The ARN GetCallerIdentity returned: `arn:aws:sts::123456789012:assumed-role/NodeRole/i-0123456789abcdef0`. */
  readonly arn: string;
  /** The CSR digest (hex SHA-256 of the PEM) in a header the caller signed; undefined when no signed header carried it. */
  readonly signedCsrSha256: string | undefined;
  /** The issuer the caller meant (a signed header); undefined when no signed header carried it. */
  readonly signedAudience: string | undefined;
}

/** The instance named by the caller's session, as Auto Scaling and EC2 describe it now; undefined when unknown. */
export interface CallerInstance {
  readonly instanceId: string;
  /** The Auto Scaling group it belongs to, undefined when none. */
  readonly groupName: string | undefined;
  readonly lifecycleState: string;
  readonly privateIp: string | undefined;
  readonly privateDnsName: string | undefined;
}

export interface IssuancePolicy {
  readonly accountId: string;
  /** The instances' role name (exactly; EC2 names each instance's session after its instance ID). */
  readonly nodeRoleName: string;
  /** The functions' role names: only their sessions (which only Lambda can make) get the root certificate. */
  readonly controlRoleNames: readonly string[];
  /**
   * The functions themselves: Lambda names a function's session after it, and a function name is unique in
   * its account and region, so another function given one of those roles (iam:PassRole) is not them.
   */
  readonly controlFunctionNames: readonly string[];
  /** A root certificate's lifetime: a function's container lives hours, and asks again when it runs out. */
  readonly controlLifetimeMs: number;
  readonly groupName: string;
  /** This issuer's name, which the caller signs into its request so it cannot be replayed to another service. */
  readonly audience: string;
  /** More DNS names a `server` certificate may carry: the load balancer's. */
  readonly serverDnsNames: readonly string[];
  readonly lifetimeMs: number;
  /** How far before now a certificate's validity starts, for clocks that lag. */
  readonly backdateMs: number;
}

export interface IssuanceRequest {
  readonly kind: CertificateKind;
  readonly csr: CsrRequest;
  /** Hex SHA-256 of the CSR PEM the issuer received. */
  readonly csrSha256: string;
}

export type RefusalCode =
  | 'caller-not-node-role'
  | 'caller-not-control-plane'
  | 'caller-not-instance'
  | 'request-not-bound'
  | 'instance-unknown'
  | 'instance-not-in-group'
  | 'instance-not-active'
  | 'csr-key-type'
  | 'csr-signature'
  | 'csr-foreign-name'
  | 'csr-missing-ip'
  | 'csr-user-name';

/** An etcd user name a user certificate may carry: etcd allows more, these are safe in a CN and in logs. */
const USER_NAME = /^[A-Za-z0-9][\w.@-]{0,63}$/;

export type IssuanceDecision =
  | {
      readonly kind: 'issue';
      readonly ca: 'peer' | 'client';
      readonly profile: CertificateProfile;
      readonly notBefore: number;
      readonly notAfter: number;
      /** Who it is for: the instance ID, or the function's session name. */
      readonly caller: string;
      readonly reason: string;
    }
  | { readonly kind: 'refuse'; readonly code: RefusalCode; readonly reason: string };

const ASSUMED_ROLE = /^arn:aws[a-z-]*:sts::(\d{12}):assumed-role\/([\w+=,.@-]+)\/([\w+=,.@-]+)$/;
const INSTANCE_ID = /^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$/;

/** The instance ID an instance-profile session names, when `arn` is one of this policy's node role; else a refusal. */
export function callerInstanceId(arn: string, policy: Pick<IssuancePolicy, 'accountId' | 'nodeRoleName'>): { instanceId: string } | { code: RefusalCode; reason: string } {
  const match = ASSUMED_ROLE.exec(arn);
  if (!match || match[1] !== policy.accountId || match[2] !== policy.nodeRoleName) {
    return {
      code: 'caller-not-node-role',
      reason: `the caller is ${arn}, not a session of this stack's node role ${policy.nodeRoleName} in account ${policy.accountId}; only the cluster's instances get node certificates, with their instance profile's credentials`,
    };
  }
  const session = match[3] as string;
  if (!INSTANCE_ID.test(session)) {
    return {
      code: 'caller-not-instance',
      reason: `the caller's session is "${session}", not an instance ID: EC2 names an instance profile's session after the instance; sign the request with the instance's own credentials (from IMDS)`,
    };
  }
  return { instanceId: session };
}

/** Why the signed identity request does not vouch for this CSR at this issuer; undefined when it does. */
function bindingRefusal(request: IssuanceRequest, caller: CallerFacts, policy: IssuancePolicy): string | undefined {
  if (caller.signedCsrSha256 === request.csrSha256 && caller.signedAudience === policy.audience) return undefined;
  if (caller.signedCsrSha256 === undefined || caller.signedAudience === undefined) {
    return 'the signed identity request does not sign the CSR digest and the issuer name; make it with signIdentityRequest';
  }
  if (caller.signedAudience !== policy.audience) return `the signed identity request was made for issuer "${caller.signedAudience}", not this one ("${policy.audience}")`;
  return 'the signed identity request was made for another CSR (its digest differs): sign the CSR you send';
}

function csrRefusal(csr: CsrRequest): { code: RefusalCode; reason: string } | undefined {
  if (csr.keyType !== 'P-256') return { code: 'csr-key-type', reason: `the CSR's key is ${csr.keyType}; generate an ECDSA P-256 key` };
  if (!csr.signatureValid) return { code: 'csr-signature', reason: "the CSR's signature does not verify with its own key: it was altered or made wrong" };
  return undefined;
}

/** The root certificate: only for a session of one of the functions' roles (which only Lambda can make). */
function decideRoot(request: IssuanceRequest, caller: CallerFacts, policy: IssuancePolicy, now: number): IssuanceDecision {
  const refuse = (code: RefusalCode, reason: string): IssuanceDecision => ({ kind: 'refuse', code, reason });
  const match = ASSUMED_ROLE.exec(caller.arn);
  if (!match || match[1] !== policy.accountId || !policy.controlRoleNames.includes(match[2] as string)) {
    return refuse(
      'caller-not-control-plane',
      `the caller is ${caller.arn}; only this stack's functions (roles ${policy.controlRoleNames.join(', ') || 'none configured'} in account ${policy.accountId}) get etcd's root certificate`,
    );
  }
  const session = match[3] as string;
  if (!policy.controlFunctionNames.includes(session)) {
    return refuse(
      'caller-not-control-plane',
      `the caller is ${session}, running as ${match[2] as string}, but only this stack's functions (${policy.controlFunctionNames.join(', ') || 'none configured'}) get etcd's root certificate`,
    );
  }
  const unbound = bindingRefusal(request, caller, policy);
  if (unbound) return refuse('request-not-bound', unbound);
  const badCsr = csrRefusal(request.csr);
  if (badCsr) return refuse(badCsr.code, badCsr.reason);
  if (request.csr.ips.length + request.csr.dnsNames.length > 0) {
    return refuse('csr-foreign-name', `a root certificate carries no addresses, but the CSR asks for ${[...request.csr.ips, ...request.csr.dnsNames].join(', ')}; send a CSR without subject alternative names`);
  }
  return {
    kind: 'issue',
    ca: 'client',
    profile: { commonName: COMMON_NAMES.root, ips: [], dnsNames: [], serverAuth: false, clientAuth: true },
    notBefore: now - policy.backdateMs,
    notAfter: now + Math.min(policy.lifetimeMs, policy.controlLifetimeMs),
    caller: session,
    reason: `${session} runs as ${match[2] as string}, one of the functions' roles`,
  };
}

/** A user certificate, for a node that is Pending or InService in the group (checked before): its CN is the user. */
function decideUser(csr: CsrRequest, instanceId: string, policy: IssuancePolicy, now: number): IssuanceDecision {
  const refuse = (code: RefusalCode, reason: string): IssuanceDecision => ({ kind: 'refuse', code, reason });
  if (csr.ips.length + csr.dnsNames.length > 0) {
    return refuse('csr-foreign-name', `a user certificate carries no addresses, but the CSR asks for ${[...csr.ips, ...csr.dnsNames].join(', ')}; send a CSR without subject alternative names`);
  }
  const user = csr.commonName;
  if (user === undefined || !USER_NAME.test(user)) {
    return refuse('csr-user-name', `the CSR's CN ${user === undefined ? 'is missing' : `"${user}" is not a user name this issuer signs`}; set it to the etcd user (letters, digits, . _ @ -; at most 64), e.g. -subj /CN=app-reader`);
  }
  const reserved = Object.values(COMMON_NAMES);
  // etcd matches user names exactly; refusing every spelling of them keeps look-alikes out of logs too.
  if (reserved.includes(user.toLowerCase())) {
    return refuse('csr-user-name', `"${user}" is the control plane's own identity (${reserved.join(', ')} are reserved); create a user of your own in etcd and ask for its name`);
  }
  return {
    kind: 'issue',
    ca: 'client',
    profile: { commonName: user, ips: [], dnsNames: [], serverAuth: false, clientAuth: true },
    notBefore: now - policy.backdateMs,
    // No longer than a node's own certificates: whoever holds a node's credentials gets nothing that outlives
    // what the node's own root-role identity already gives them.
    notAfter: now + policy.lifetimeMs,
    caller: instanceId,
    reason: `instance ${instanceId} is in ${policy.groupName} and asks for etcd user ${user}, which is none of the control plane's identities`,
  };
}

/** Decides one certificate request. Pure. */
export function decideIssuance(
  request: IssuanceRequest,
  caller: CallerFacts,
  instance: CallerInstance | undefined,
  policy: IssuancePolicy,
  now: number,
): IssuanceDecision {
  const refuse = (code: RefusalCode, reason: string): IssuanceDecision => ({ kind: 'refuse', code, reason });
  if (request.kind === 'root') return decideRoot(request, caller, policy, now);
  const who = callerInstanceId(caller.arn, policy);
  if ('code' in who) return refuse(who.code, who.reason);
  const { instanceId } = who;

  const unbound = bindingRefusal(request, caller, policy);
  if (unbound) return refuse('request-not-bound', unbound);
  if (!instance || instance.instanceId !== instanceId) return refuse('instance-unknown', `instance ${instanceId} is not known to Auto Scaling or EC2 in this region`);
  if (instance.groupName !== policy.groupName) {
    return refuse('instance-not-in-group', `instance ${instanceId} is ${instance.groupName ? `in group ${instance.groupName}` : 'in no Auto Scaling group'}, not in ${policy.groupName}`);
  }
  if (!isActive({ ...instance, healthStatus: '', availabilityZone: '' })) {
    return refuse(
      'instance-not-active',
      `instance ${instanceId} is ${instance.lifecycleState}; certificates go only to instances that are Pending or InService in ${policy.groupName}`,
    );
  }

  const { csr } = request;
  const badCsr = csrRefusal(csr);
  if (badCsr) return refuse(badCsr.code, badCsr.reason);

  if (request.kind === 'user') return decideUser(csr, instanceId, policy, now);

  const ownIps = instance.privateIp ? [instance.privateIp] : [];
  const ownDns = [...(instance.privateDnsName ? [instance.privateDnsName] : []), ...(request.kind === 'server' ? policy.serverDnsNames : [])];
  if (request.kind === 'client' && csr.ips.length + csr.dnsNames.length > 0) {
    return refuse('csr-foreign-name', `a client certificate carries no addresses, but the CSR asks for ${[...csr.ips, ...csr.dnsNames].join(', ')}; send a CSR without subject alternative names`);
  }
  const foreign = [...csr.ips.filter((ip) => !ownIps.includes(ip)), ...csr.dnsNames.filter((d) => !ownDns.map((o) => o.toLowerCase()).includes(d.toLowerCase()))];
  if (foreign.length > 0) {
    return refuse(
      'csr-foreign-name',
      `the CSR asks for ${foreign.join(', ')}, which ${foreign.length === 1 ? 'is' : 'are'} not instance ${instanceId}'s; it may ask only for ${[...ownIps, ...ownDns].join(', ') || 'nothing'}`,
    );
  }
  if (request.kind !== 'client' && (instance.privateIp === undefined || !csr.ips.includes(instance.privateIp))) {
    return refuse('csr-missing-ip', `a ${request.kind} certificate must carry the instance's private IP ${instance.privateIp ?? '(none known yet)'}: peers and clients dial it by IP`);
  }

  return {
    kind: 'issue',
    ca: request.kind === 'peer' ? 'peer' : 'client',
    profile: {
      commonName: COMMON_NAMES[request.kind],
      ips: csr.ips,
      dnsNames: csr.dnsNames,
      serverAuth: request.kind !== 'client',
      clientAuth: true,
    },
    notBefore: now - policy.backdateMs,
    notAfter: now + policy.lifetimeMs,
    caller: instanceId,
    reason: `instance ${instanceId} is ${instance.lifecycleState} in ${policy.groupName} and asks only for its own names`,
  };
}

/** The validity of an installed certificate, epoch ms. */
export interface Validity {
  readonly notBefore: number;
  readonly notAfter: number;
}

/**
 * Whether a node's certificates need renewing now: one is missing, or a third or less of a certificate's
 * lifetime is left (two days of a week: time for the issuer to be retried through an outage), or it is not
 * valid yet by this clock. Pure.
 */
export function renewalDue(installed: readonly (Validity | undefined)[], now: number): { due: boolean; reason: string } {
  if (installed.length === 0 || installed.some((v) => v === undefined)) return { due: true, reason: 'a certificate is missing or unreadable' };
  for (const v of installed as Validity[]) {
    if (now < v.notBefore) return { due: true, reason: `a certificate is valid only from ${new Date(v.notBefore).toISOString()}` };
    const left = v.notAfter - now;
    if (left <= (v.notAfter - v.notBefore) / 3) {
      return { due: true, reason: left <= 0 ? `a certificate expired at ${new Date(v.notAfter).toISOString()}` : `a third or less of a certificate's lifetime is left (until ${new Date(v.notAfter).toISOString()})` };
    }
  }
  return { due: false, reason: 'every certificate has more than a third of its lifetime left' };
}

/**
 * Whether certificates that are due for renewal may still be used while the renewal fails: each is there and
 * valid now. A renewal that fails then is retried later instead of stopping what needs them (an etcd that
 * would otherwise not start, a function that would not back up). Pure.
 */
export function usableNow(installed: readonly (Validity | undefined)[], now: number): boolean {
  return installed.length > 0 && installed.every((v) => v !== undefined && v.notBefore <= now && now < v.notAfter);
}

/** The shortest wait between two certificate checks, however close the expiry (a retry of the issuer). */
export const MIN_CERTIFICATE_CHECK_MS = 30_000;

/**
 * How long the agent waits before it checks its certificates again: `regularMs`, or less once the first of
 * them expires sooner than four checks from now, so a renewal that failed (certificates kept while valid)
 * is retried several times before they run out; never less than MIN_CERTIFICATE_CHECK_MS. Pure.
 */
export function nextCertificateCheckMs(installed: readonly (Validity | undefined)[], now: number, regularMs: number): number {
  const expiries = installed.flatMap((v) => (v === undefined ? [] : [v.notAfter]));
  if (expiries.length < installed.length || expiries.length === 0) return MIN_CERTIFICATE_CHECK_MS;
  const left = Math.min(...expiries) - now;
  return Math.max(MIN_CERTIFICATE_CHECK_MS, Math.min(regularMs, Math.floor(left / 4)));
}
