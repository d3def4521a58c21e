import { describe, expect, it } from 'vitest';
import { callerInstanceId, decideIssuance, type CallerFacts, type CallerInstance, type IssuancePolicy, type IssuanceRequest, type RefusalCode } from '../../core/domain/issuance.js';

const NOW = 1_800_000_000_000;
const ID = 'i-0123456789abcdef0';
const policy: IssuancePolicy = {
  accountId: '123456789012',
  nodeRoleName: 'etcd-aws-dev-NodeRole-ABC',
  controlRoleNames: ['etcd-aws-dev-BackupRole-1', 'etcd-aws-dev-ReconcileRole-2'],
  controlFunctionNames: ['etcd-aws-dev-backup', 'etcd-aws-dev-reconcile'],
  controlLifetimeMs: 12 * 3600_000,
  groupName: 'etcd-aws-dev',
  audience: 'etcd-aws-dev-issuer',
  serverDnsNames: ['etcd-nlb.elb.us-east-1.amazonaws.com'],
  lifetimeMs: 7 * 86_400_000,
  backdateMs: 300_000,
};
const DIGEST = 'ab'.repeat(32);
const caller = (over: Partial<CallerFacts> = {}): CallerFacts => ({
  arn: `arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/${ID}`,
  signedCsrSha256: DIGEST,
  signedAudience: 'etcd-aws-dev-issuer',
  ...over,
});
const instance = (over: Partial<CallerInstance> = {}): CallerInstance => ({
  instanceId: ID,
  groupName: 'etcd-aws-dev',
  lifecycleState: 'InService',
  privateIp: '10.0.1.5',
  privateDnsName: 'ip-10-0-1-5.ec2.internal',
  ...over,
});
const request = (kind: IssuanceRequest['kind'], ips: string[], dnsNames: string[] = [], over: Partial<IssuanceRequest['csr']> = {}): IssuanceRequest => ({
  kind,
  csrSha256: DIGEST,
  csr: { keyType: 'P-256', signatureValid: true, ips, dnsNames, commonName: 'ignored-for-node-kinds', publicKey: new ArrayBuffer(0), ...over },
});

describe('callerInstanceId', () => {
  it.each<[string, string, string]>([
    ['an instance session of the node role', `arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/${ID}`, ID],
    ['a short (8-digit) instance ID', 'arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/i-0123abcd', 'i-0123abcd'],
    ['another partition', `arn:aws-us-gov:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/${ID}`, ID],
    ['another role whose name starts like ours', `arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABCD/${ID}`, 'caller-not-node-role'],
    ['the node role in another account', `arn:aws:sts::210987654321:assumed-role/etcd-aws-dev-NodeRole-ABC/${ID}`, 'caller-not-node-role'],
    ['an IAM user', 'arn:aws:iam::123456789012:user/alice', 'caller-not-node-role'],
    ['a session named by whoever assumed the role', 'arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/alice', 'caller-not-instance'],
    ['a session name that only contains an instance ID', `arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/x${ID}`, 'caller-not-instance'],
    ['an instance ID of the wrong length', 'arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/i-0123456789', 'caller-not-instance'],
  ])('%s', (_why, arn, expected) => {
    const out = callerInstanceId(arn, policy);
    expect('instanceId' in out ? out.instanceId : out.code).toBe(expected);
  });
});

describe('decideIssuance', () => {
  it.each<[string, IssuanceRequest, string, string[], boolean]>([
    ['a peer certificate for its IP and DNS name', request('peer', ['10.0.1.5'], ['ip-10-0-1-5.ec2.internal']), 'etcd-peer', ['10.0.1.5'], true],
    ['a server certificate may add the load balancer name', request('server', ['10.0.1.5'], ['ETCD-NLB.elb.us-east-1.amazonaws.com']), 'etcd-node', ['10.0.1.5'], true],
    ['a client certificate carries no names', request('client', []), 'etcd-aws-agent', [], false],
  ])('issues %s', (_why, req, commonName, ips, serverAuth) => {
    const decision = decideIssuance(req, caller(), instance(), policy, NOW);
    expect(decision).toMatchObject({
      kind: 'issue',
      ca: req.kind === 'peer' ? 'peer' : 'client',
      caller: ID,
      profile: { commonName, ips, dnsNames: req.csr.dnsNames, serverAuth, clientAuth: true },
      notBefore: NOW - policy.backdateMs,
      notAfter: NOW + policy.lifetimeMs,
    });
  });

  it.each<[string, IssuanceRequest, CallerFacts, CallerInstance | undefined, RefusalCode, string]>([
    ['a caller that is not the node role', request('peer', ['10.0.1.5']), caller({ arn: 'arn:aws:iam::123456789012:user/alice' }), instance(), 'caller-not-node-role', 'not a session of'],
    ['a role session not named after an instance', request('peer', ['10.0.1.5']), caller({ arn: 'arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-NodeRole-ABC/admin' }), instance(), 'caller-not-instance', 'not an instance ID'],
    ['a signature that does not cover the CSR digest', request('peer', ['10.0.1.5']), caller({ signedCsrSha256: undefined }), instance(), 'request-not-bound', 'does not sign the CSR digest'],
    ['a signed request made for another CSR', request('peer', ['10.0.1.5']), caller({ signedCsrSha256: 'cd'.repeat(32) }), instance(), 'request-not-bound', 'for another CSR'],
    ['a signed request made for another issuer', request('peer', ['10.0.1.5']), caller({ signedAudience: 'vault' }), instance(), 'request-not-bound', 'for issuer "vault"'],
    ['an answer about another instance than the caller', request('peer', ['10.0.1.5']), caller(), instance({ instanceId: 'i-0fedcba9876543210' }), 'instance-unknown', 'not known'],
    ['an instance neither Auto Scaling nor EC2 knows', request('peer', ['10.0.1.5']), caller(), undefined, 'instance-unknown', 'not known'],
    ['an instance of another group', request('peer', ['10.0.1.5']), caller(), instance({ groupName: 'other' }), 'instance-not-in-group', 'in group other, not in etcd-aws-dev'],
    ['an instance in no group', request('peer', ['10.0.1.5']), caller(), instance({ groupName: undefined }), 'instance-not-in-group', 'in no Auto Scaling group'],
    ['a terminating instance', request('peer', ['10.0.1.5']), caller(), instance({ lifecycleState: 'Terminating:Wait' }), 'instance-not-active', 'is Terminating:Wait'],
    ['an instance in standby', request('peer', ['10.0.1.5']), caller(), instance({ lifecycleState: 'Standby' }), 'instance-not-active', 'Pending or InService'],
    ['an RSA key', request('peer', ['10.0.1.5'], [], { keyType: 'RSASSA-PKCS1-v1_5' }), caller(), instance(), 'csr-key-type', 'ECDSA P-256'],
    ['a CSR whose signature does not verify', request('peer', ['10.0.1.5'], [], { signatureValid: false }), caller(), instance(), 'csr-signature', 'altered'],
    ["another instance's IP", request('peer', ['10.0.1.5', '10.0.2.7']), caller(), instance(), 'csr-foreign-name', '10.0.2.7, which is not'],
    ['a DNS name not its own', request('peer', ['10.0.1.5'], ['etcd.example.com']), caller(), instance(), 'csr-foreign-name', 'etcd.example.com'],
    ['the load balancer name on a peer certificate', request('peer', ['10.0.1.5'], ['etcd-nlb.elb.us-east-1.amazonaws.com']), caller(), instance(), 'csr-foreign-name', 'etcd-nlb'],
    ['addresses on a client certificate', request('client', ['10.0.1.5']), caller(), instance(), 'csr-foreign-name', 'carries no addresses'],
    ['a peer certificate without its IP', request('peer', [], ['ip-10-0-1-5.ec2.internal']), caller(), instance(), 'csr-missing-ip', 'must carry the instance\'s private IP 10.0.1.5'],
    ['a server certificate before EC2 gave the instance an IP', request('server', ['10.0.1.5']), caller(), instance({ privateIp: undefined }), 'csr-foreign-name', 'not instance'],
  ])('refuses %s', (_why, req, who, inst, code, says) => {
    const decision = decideIssuance(req, who, inst, policy, NOW);
    expect(decision).toMatchObject({ kind: 'refuse', code });
    expect(decision.kind === 'refuse' ? decision.reason : '').toContain(says);
  });

  it.each(['Pending', 'Pending:Wait', 'Pending:Proceed', 'InService'])('issues to an instance that is %s', (lifecycleState) => {
    expect(decideIssuance(request('peer', ['10.0.1.5']), caller(), instance({ lifecycleState }), policy, NOW).kind).toBe('issue');
  });

  describe('the root certificate', () => {
    const fn = (role: string, session = 'etcd-aws-dev-backup'): CallerFacts => caller({ arn: `arn:aws:sts::123456789012:assumed-role/${role}/${session}` });
    it("issues CN root, client only, for half a day, to a session of a function's role", () => {
      expect(decideIssuance(request('root', []), fn('etcd-aws-dev-BackupRole-1'), undefined, policy, NOW)).toEqual({
        kind: 'issue',
        ca: 'client',
        profile: { commonName: 'root', ips: [], dnsNames: [], serverAuth: false, clientAuth: true },
        notBefore: NOW - policy.backdateMs,
        notAfter: NOW + 12 * 3600_000,
        caller: 'etcd-aws-dev-backup',
        reason: 'etcd-aws-dev-backup runs as etcd-aws-dev-BackupRole-1, one of the functions\' roles',
      });
    });

    it.each<[string, IssuanceRequest, CallerFacts, RefusalCode, string]>([
      ['to an instance of the group', request('root', []), caller(), 'caller-not-control-plane', 'only this stack\'s functions'],
      ['to a role whose name starts like a function\'s', request('root', []), fn('etcd-aws-dev-BackupRole-10'), 'caller-not-control-plane', 'etcd-aws-dev-BackupRole-1, etcd-aws-dev-ReconcileRole-2'],
      ['to another function given a function\'s role', request('root', []), fn('etcd-aws-dev-BackupRole-1', 'attacker-function'), 'caller-not-control-plane', 'only this stack\'s functions (etcd-aws-dev-backup, etcd-aws-dev-reconcile)'],
      ['to a function role of another account', request('root', []), caller({ arn: 'arn:aws:sts::210987654321:assumed-role/etcd-aws-dev-BackupRole-1/x' }), 'caller-not-control-plane', 'in account 123456789012'],
      ['with a request signed for another CSR', request('root', []), { ...fn('etcd-aws-dev-BackupRole-1'), signedCsrSha256: 'cd'.repeat(32) }, 'request-not-bound', 'for another CSR'],
      ['with addresses', request('root', ['10.0.1.5']), fn('etcd-aws-dev-BackupRole-1'), 'csr-foreign-name', 'carries no addresses'],
      ['for an altered CSR', request('root', [], [], { signatureValid: false }), fn('etcd-aws-dev-BackupRole-1'), 'csr-signature', 'altered'],
    ])('refuses it %s', (_why, req, who, code, says) => {
      const decision = decideIssuance(req, who, instance(), policy, NOW);
      expect(decision).toMatchObject({ kind: 'refuse', code });
      expect(decision.kind === 'refuse' ? decision.reason : '').toContain(says);
    });

    it("refuses a node certificate to a function's role", () => {
      expect(decideIssuance(request('client', []), fn('etcd-aws-dev-BackupRole-1'), undefined, policy, NOW)).toMatchObject({ kind: 'refuse', code: 'caller-not-node-role' });
    });
  });

  describe('a user certificate', () => {
    const user = (commonName: string | undefined, ips: string[] = []) => request('user', ips, [], { commonName });
    it('issues the CSR\'s CN, client only, no addresses, no longer than a node certificate, to an instance of the group', () => {
      expect(decideIssuance(user('app-reader'), caller(), instance(), policy, NOW)).toEqual({
        kind: 'issue',
        ca: 'client',
        profile: { commonName: 'app-reader', ips: [], dnsNames: [], serverAuth: false, clientAuth: true },
        notBefore: NOW - policy.backdateMs,
        notAfter: NOW + policy.lifetimeMs,
        caller: ID,
        reason: `instance ${ID} is in etcd-aws-dev and asks for etcd user app-reader, which is none of the control plane's identities`,
      });
    });

    it.each<[string, IssuanceRequest, CallerFacts, CallerInstance | undefined, RefusalCode, string]>([
      ['for root', user('root'), caller(), instance(), 'csr-user-name', 'reserved'],
      ['for root in capitals', user('ROOT'), caller(), instance(), 'csr-user-name', 'reserved'],
      ["for the agent's user", user('etcd-aws-agent'), caller(), instance(), 'csr-user-name', 'reserved'],
      ['for the peer CN', user('etcd-peer'), caller(), instance(), 'csr-user-name', 'reserved'],
      ['without a CN', user(undefined), caller(), instance(), 'csr-user-name', 'is missing'],
      ['for a name with a comma', user('a,b'), caller(), instance(), 'csr-user-name', '"a,b" is not a user name'],
      ['with addresses', user('app', ['10.0.1.5']), caller(), instance(), 'csr-foreign-name', 'carries no addresses'],
      ['to a function', user('app'), caller({ arn: 'arn:aws:sts::123456789012:assumed-role/etcd-aws-dev-BackupRole-1/etcd-aws-dev-backup' }), undefined, 'caller-not-node-role', 'not a session of'],
      ['to an instance that left the group', user('app'), caller(), instance({ groupName: undefined }), 'instance-not-in-group', 'in no Auto Scaling group'],
      ['to an instance in standby', user('app'), caller(), instance({ lifecycleState: 'Standby' }), 'instance-not-active', 'Standby'],
    ])('refuses it %s', (_why, req, who, inst, code, says) => {
      const decision = decideIssuance(req, who, inst, policy, NOW);
      expect(decision).toMatchObject({ kind: 'refuse', code });
      expect(decision.kind === 'refuse' ? decision.reason : '').toContain(says);
    });
  });
});
