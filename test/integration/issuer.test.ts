import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { AutoScalingClient, DetachInstancesCommand, EnterStandbyCommand } from '@aws-sdk/client-auto-scaling';
import { CreateSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3Cluster } from '../../core/etcd/cluster.js';
import { requestDigest, signIdentityRequest, stsEndpoint, type SigningCredentials } from '../../core/aws/caller-identity.js';
import { createCertificateAuthority, createKeyAndCsr, describeCertificate, issueCertificate, readCsr } from '../../core/pki/x509.js';
import type { IssueRequest, IssueResult } from '../../core/use-cases/issue-certificate.js';
import { build } from '../../scripts/build.mjs';
import { createSimulatedGroup, type SimulatedGroup } from '../../testbed/aws-world.js';
import { startImds, TESTBED_NODE_ROLE } from '../../testbed/imds.js';
import { handlerEnv, invokeBundle } from '../../testbed/lambda.js';
import { startLambdaService } from '../../testbed/lambda-service.js';
import { emulatorEnv } from '../../testbed/moto.js';
import { etcdBin } from '../../testbed/tools.js';
import { waitFor } from '../../testbed/wait.js';
import { openBed, uniqueName, type Bed } from '../support/testbed.js';
import { etcdctlAs, type CtlIdentity } from '../support/etcdctl.js';
import { sessionCredentials } from '../../testbed/pki.js';

// The built issuer, invoked as a node invokes it: the node signs an STS GetCallerIdentity request with its
// instance-profile credentials (here: the emulator's AssumeRole with the instance ID as session name, as EC2
// names it), the issuer asks STS (the emulator) who signed it, and Auto Scaling and EC2 where that instance is.
// The certificates it issues then run a real etcd with client and peer TLS and client-certificate auth.
const run = promisify(execFile);
const REGION = 'us-east-1';
const NODE_ROLE = TESTBED_NODE_ROLE;
const AUDIENCE = 'etcd-aws-test-issuer';
/** A function's role, and its session as Lambda names it (after the function). */
const CONTROL_ROLE = 'etcd-aws-testbed-BackupRole';
const CONTROL_SESSION = 'etcd-aws-test-backup';

let bed: Bed;
let bundle: string;
let agentBundle: string;
let group: SimulatedGroup;
let secretArn: string;

async function newSecret(): Promise<string> {
  const out = await new SecretsManagerClient({ region: REGION }).send(new CreateSecretCommand({ Name: uniqueName('etcd-ca'), SecretString: '{}' }));
  return out.ARN as string;
}

/** A request as a node makes it: its CSR, and the identity request signed over the CSR's digest. */
async function request(
  kind: IssueRequest['kind'],
  names: { readonly ips: readonly string[]; readonly dnsNames?: readonly string[] },
  credentials: SigningCredentials,
  options: { audience?: string; signedCsr?: string } = {},
): Promise<{ event: IssueRequest; keyPem: string }> {
  const { keyPem, csrPem } = await createKeyAndCsr({ name: 'root', ips: names.ips, dnsNames: names.dnsNames ?? [] });
  const identity = await signIdentityRequest({
    credentials,
    region: REGION,
    endpoint: stsEndpoint(REGION),
    csrSha256: requestDigest(kind, options.signedCsr ?? csrPem),
    audience: options.audience ?? AUDIENCE,
  });
  return { event: { kind, csr: csrPem, identity }, keyPem };
}

const issuerEnv = (secret = secretArn) =>
  handlerEnv({
    ETCD_ASG_NAME: group.groupName,
    ETCD_AWS_CA_SECRET: secret,
    ETCD_AWS_NODE_ROLE: NODE_ROLE,
    ETCD_AWS_CONTROL_ROLES: CONTROL_ROLE,
    ETCD_AWS_CONTROL_FUNCTIONS: CONTROL_SESSION,
    ETCD_AWS_SERVER_DNS_NAMES: 'etcd-nlb.elb.us-east-1.amazonaws.com',
    AWS_LAMBDA_FUNCTION_NAME: AUDIENCE,
  });
const issue = async (event: unknown, secret = secretArn): Promise<IssueResult> => (await invokeBundle<IssueResult>(bundle, event, issuerEnv(secret))).result;

function issued(result: IssueResult): Extract<IssueResult, { status: 'issued' }> {
  if (result.status !== 'issued') throw new Error(`refused: ${result.code}: ${result.reason}`);
  return result;
}

beforeAll(async () => {
  bed = openBed('issuer');
  const built = await build({ outDir: path.join(bed.workDir, 'dist'), quiet: true });
  bundle = built.functions.issuer ?? '';
  agentBundle = built.agent;
  group = await createSimulatedGroup({ network: bed.network, groupName: uniqueName('etcd'), size: 4 });
  secretArn = await newSecret();
  // Instances 0 and 1 stay in service; 2 leaves the group, 3 is parked in standby (both are refused).
  const autoScaling = new AutoScalingClient({ region: REGION });
  await autoScaling.send(new DetachInstancesCommand({ AutoScalingGroupName: group.groupName, InstanceIds: [group.instances[2]!.instanceId], ShouldDecrementDesiredCapacity: true }));
  await autoScaling.send(new EnterStandbyCommand({ AutoScalingGroupName: group.groupName, InstanceIds: [group.instances[3]!.instanceId], ShouldDecrementDesiredCapacity: true }));
});

afterAll(async () => {
  await bed.dispose();
});

describe('issuer (built bundle) with signed STS identity', () => {
  it('makes the CAs once when two first requests race, and both certificates chain to the same CA', async () => {
    const secret = await newSecret();
    const a = group.instances[0]!;
    const b = group.instances[1]!;
    const [ra, rb] = await Promise.all([
      request('peer', { ips: [a.privateIp] }, await sessionCredentials(NODE_ROLE, a.instanceId)).then((r) => issue(r.event, secret)),
      request('peer', { ips: [b.privateIp] }, await sessionCredentials(NODE_ROLE, b.instanceId)).then((r) => issue(r.event, secret)),
    ]);
    expect(issued(ra).peerCaPem).toBe(issued(rb).peerCaPem);
    expect(issued(ra).clientCaPem).toBe(issued(rb).clientCaPem);
    const stored = JSON.parse((await new SecretsManagerClient({ region: REGION }).send(new GetSecretValueCommand({ SecretId: secret }))).SecretString ?? '') as { peer: { certPem: string } };
    expect(stored.peer.certPem).toBe(issued(ra).peerCaPem);
    expect(describeCertificate(issued(rb).certificatePem, stored.peer.certPem).signedByCa).toBe(true);
  });

  it.each<[string, (ids: SimulatedGroup['instances']) => Promise<IssueRequest>, string, RegExp]>([
    [
      "a CSR for another instance's IP",
      async ([a, b]) => (await request('peer', { ips: [a!.privateIp, b!.privateIp] }, await sessionCredentials(NODE_ROLE, a!.instanceId))).event,
      'csr-foreign-name',
      /which is not instance i-/,
    ],
    [
      'a session of the node role not named after an instance',
      async ([a]) => (await request('peer', { ips: [a!.privateIp] }, await sessionCredentials(NODE_ROLE, 'admin-laptop'))).event,
      'caller-not-instance',
      /"admin-laptop", not an instance ID/,
    ],
    [
      'an instance session of another role',
      async ([a]) => (await request('peer', { ips: [a!.privateIp] }, await sessionCredentials('SomeOtherRole', a!.instanceId))).event,
      'caller-not-node-role',
      /not a session of this stack's node role/,
    ],
    [
      'a request signed for another issuer',
      async ([a]) => (await request('peer', { ips: [a!.privateIp] }, await sessionCredentials(NODE_ROLE, a!.instanceId), { audience: 'vault' })).event,
      'request-not-bound',
      /for issuer "vault"/,
    ],
    [
      "another CSR sent with a node's signed request (a replay)",
      async ([a]) => (await request('peer', { ips: [a!.privateIp] }, await sessionCredentials(NODE_ROLE, a!.instanceId), { signedCsr: 'another CSR' })).event,
      'request-not-bound',
      /for another CSR/,
    ],
    [
      'an identity request with a header the issuer does not pass on',
      async ([a]) => {
        const { event } = await request('peer', { ips: [a!.privateIp] }, await sessionCredentials(NODE_ROLE, a!.instanceId));
        return { ...event, identity: { ...event.identity, headers: { ...event.identity.headers, 'x-forwarded-host': 'evil.example' } } };
      },
      'bad-request',
      /x-forwarded-host/,
    ],
    [
      "etcd's root certificate to an instance",
      async ([a]) => (await request('root', { ips: [] }, await sessionCredentials(NODE_ROLE, a!.instanceId))).event,
      'caller-not-control-plane',
      /only this stack's functions/,
    ],
    [
      'a node certificate to a function',
      async ([a]) => (await request('peer', { ips: [a!.privateIp] }, await sessionCredentials(CONTROL_ROLE, CONTROL_SESSION))).event,
      'caller-not-node-role',
      /not a session of this stack's node role/,
    ],
    ['a request that is not a certificate request', () => Promise.resolve({ kind: 'peer', csr: 'hello' } as unknown as IssueRequest), 'bad-request', /identity/],
  ])('refuses %s, saying why', async (_why, make, code, says) => {
    const result = await issue(await make(group.instances));
    expect(result).toMatchObject({ status: 'refused', code });
    expect(result.status === 'refused' ? result.reason : '').toMatch(says);
  });

  it('refuses an instance that left the group, and one parked in standby', async () => {
    const detached = group.instances[2]!;
    const parked = group.instances[3]!;
    const gone = await issue((await request('peer', { ips: [detached.privateIp] }, await sessionCredentials(NODE_ROLE, detached.instanceId))).event);
    expect(gone).toMatchObject({ status: 'refused', code: 'instance-not-in-group' });
    const standby = await issue((await request('peer', { ips: [parked.privateIp] }, await sessionCredentials(NODE_ROLE, parked.instanceId))).event);
    expect(standby).toMatchObject({ status: 'refused', code: 'instance-not-active' });
    expect(standby.status === 'refused' ? standby.reason : '').toContain('Standby');
  });

  it('gives a node its certificates through the agent (IMDS credentials, lambda:Invoke), keeps them on a rerun, and says why when refused', async () => {
    const service = await startLambdaService({ [AUDIENCE]: { bundle, env: () => issuerEnv() } });
    const agent = async (instance: SimulatedGroup['instances'][number], dir: string) => {
      const imds = await startImds(instance);
      try {
        return await run(process.execPath, [agentBundle, 'certificates'], {
          env: {
            PATH: process.env.PATH,
            ...emulatorEnv(process.env.AWS_ENDPOINT_URL as string),
            AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
            AWS_ENDPOINT_URL_LAMBDA: service.endpoint,
            BACKUP_BUCKET: 'unused-here',
            ETCD_AWS_ISSUER_FUNCTION: AUDIENCE,
            ETCD_AWS_CERT_DIR: dir,
          },
          timeout: 60_000,
        }).then(
          (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
          (error: unknown) => {
            const e = error as { code?: number; stdout?: string; stderr?: string };
            return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
          },
        );
      } finally {
        await imds.close();
      }
    };
    try {
      const node = group.instances[1]!;
      const dir = path.join(bed.workDir, 'agent-pki');
      const first = await agent(node, dir);
      expect(first, first.stderr).toMatchObject({ code: 0 });
      const files = JSON.parse(first.stdout) as { renewed: boolean; peerCaFile: string; clientCaFile: string; cert: Record<string, { certFile: string; keyFile: string }> };
      expect(files.renewed).toBe(true);
      const peer = describeCertificate(readFileSync(files.cert.peer!.certFile, 'utf8'), readFileSync(files.peerCaFile, 'utf8'));
      expect(peer).toMatchObject({ commonName: 'etcd-peer', ips: [node.privateIp], signedByCa: true });
      const client = describeCertificate(readFileSync(files.cert.client!.certFile, 'utf8'), readFileSync(files.clientCaFile, 'utf8'));
      expect(client).toMatchObject({ commonName: 'etcd-aws-agent', ips: [], signedByCa: true });
      const again = await agent(node, dir);
      expect(again, again.stderr).toMatchObject({ code: 0 });
      expect((JSON.parse(again.stdout) as { renewed: boolean }).renewed).toBe(false);

      // The instance detached from the group gets nothing, and is told why.
      const refused = await agent(group.instances[2]!, path.join(bed.workDir, 'refused-pki'));
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/certificate issuer refused: instance-not-in-group: instance i-\w+ is in no Auto Scaling group/);
    } finally {
      await service.close();
    }
  });

  it("runs etcd with its certificates: peer and client TLS, client-certificate auth and RBAC; plaintext, certificate-less, foreign and peer-CA clients are refused", async () => {
    const node = group.instances[0]!;
    const creds = await sessionCredentials(NODE_ROLE, node.instanceId);
    const dir = path.join(bed.workDir, 'tls');
    const files: Record<string, string> = {};
    const save = (name: string, pem: string) => {
      files[name] = path.join(bed.workDir, `${name}.pem`);
      writeFileSync(files[name], pem, { mode: 0o600 });
    };
    const control = await sessionCredentials(CONTROL_ROLE, CONTROL_SESSION);
    for (const [kind, names] of [['peer', { ips: [node.privateIp] }], ['server', { ips: [node.privateIp], dnsNames: ['etcd-nlb.elb.us-east-1.amazonaws.com'] }], ['client', { ips: [] }], ['root', { ips: [] }]] as const) {
      const { event, keyPem } = await request(kind, names, kind === 'root' ? control : creds);
      const out = issued(await issue(event));
      save(`${kind}-cert`, out.certificatePem);
      save(`${kind}-key`, keyPem);
      save('peer-ca', out.peerCaPem);
      save('client-ca', out.clientCaPem);
    }
    const f = (name: string) => files[name] as string;
    const ip = node.privateIp;
    bed.processes.spawn(
      'etcd tls',
      etcdBin(),
      [
        '--name=tls',
        `--data-dir=${dir}`,
        `--listen-client-urls=https://${ip}:2379`,
        `--advertise-client-urls=https://${ip}:2379`,
        `--listen-peer-urls=https://${ip}:2380`,
        `--initial-advertise-peer-urls=https://${ip}:2380`,
        `--initial-cluster=tls=https://${ip}:2380`,
        `--listen-metrics-urls=http://${ip}:2381`,
        `--cert-file=${f('server-cert')}`,
        `--key-file=${f('server-key')}`,
        `--trusted-ca-file=${f('client-ca')}`,
        '--client-cert-auth',
        `--peer-cert-file=${f('peer-cert')}`,
        `--peer-key-file=${f('peer-key')}`,
        `--peer-trusted-ca-file=${f('peer-ca')}`,
        '--peer-client-cert-auth',
        '--peer-cert-allowed-cn=etcd-peer',
        '--logger=zap',
        '--log-outputs=stderr',
      ],
      { logFile: path.join(bed.workDir, 'etcd-tls.log'), env: { PATH: process.env.PATH } },
    );
    // Health on the metrics port: plain HTTP, no client certificate (what the load balancer checks).
    await waitFor('etcd with TLS to report healthy on its metrics port', async () => {
      const res = await fetch(`http://${ip}:2381/health`, { signal: AbortSignal.timeout(2000) });
      return ((await res.json()) as { health?: string }).health === 'true';
    });

    const ctl = (args: string[], tls: CtlIdentity & { scheme?: string } = {}) => etcdctlAs(`${tls.scheme ?? 'https'}://${ip}:2379`, args, tls);
    const agent = { cacert: f('client-ca'), cert: f('client-cert'), key: f('client-key') };
    const root = { cacert: f('client-ca'), cert: f('root-cert'), key: f('root-key') };
    expect(describeCertificate(readFileSync(f('root-cert'), 'utf8')).commonName).toBe('root');

    // The control plane's root identity sets up RBAC: root (etcd requires it), the agent's user, then auth on.
    for (const args of [['role', 'add', 'root'], ['user', 'add', 'root', '--no-password'], ['user', 'grant-role', 'root', 'root'], ['user', 'add', 'etcd-aws-agent', '--no-password'], ['user', 'grant-role', 'etcd-aws-agent', 'root'], ['auth', 'enable']]) {
      const r = await ctl(args, root);
      expect(r, args.join(' ')).toMatchObject({ ok: true });
    }
    expect(await ctl(['put', 'k', 'v'], agent)).toMatchObject({ ok: true });
    expect((await ctl(['get', 'k', '--print-value-only'], root)).out.trim()).toBe('v');

    // Refused: plaintext; TLS without a client certificate; a certificate of another CA; the peer CA's
    // certificate as a client; the node's server certificate (CN etcd-node, no etcd user) as a client.
    const foreignCa = await createCertificateAuthority({ name: 'foreign', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000) });
    const foreign = await createKeyAndCsr({ name: 'root', ips: [], dnsNames: [] });
    save('foreign-cert', await issueCertificate({ ca: foreignCa, csr: await readCsr(foreign.csrPem), profile: { commonName: 'root', ips: [], dnsNames: [], serverAuth: false, clientAuth: true }, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000) }));
    save('foreign-key', foreign.keyPem);
    const refusals: Array<[string, Awaited<ReturnType<typeof ctl>>]> = [
      ['plaintext', await ctl(['get', 'k'], { scheme: 'http' })],
      ['no client certificate', await ctl(['get', 'k'], { cacert: f('client-ca') })],
      ['a CN=root certificate of another CA', await ctl(['get', 'k'], { cacert: f('client-ca'), cert: f('foreign-cert'), key: f('foreign-key') })],
      ["the peer CA's certificate", await ctl(['get', 'k'], { cacert: f('client-ca'), cert: f('peer-cert'), key: f('peer-key') })],
      ['the server certificate (no etcd user)', await ctl(['get', 'k'], { cacert: f('client-ca'), cert: f('server-cert'), key: f('server-key') })],
    ];
    for (const [why, r] of refusals) {
      expect(r.ok, `${why}: ${r.out}`).toBe(false);
      expect(r.out, why).not.toMatch(/^v$/m);
    }
    expect(refusals[4]?.[1].out).toMatch(/user name not found|permission denied|invalid auth/i);

    // The control plane's own client (etcd3) with the root certificate: Status and a verified snapshot.
    const tls = () => ({ caPem: readFileSync(f('client-ca')), certPem: readFileSync(f('root-cert')), keyPem: readFileSync(f('root-key')) });
    const url = `https://${ip}:2379`;
    const cluster = new Etcd3Cluster([url], { dialTimeoutMs: 2000, callTimeoutMs: 5000, tls });
    try {
      expect((await cluster.status(url)).isLearner).toBe(false);
      // What a racing agent meets: the role and users exist, the role is granted, authentication is on.
      await cluster.ensureRole('root');
      await cluster.ensureUser('etcd-aws-agent', ['root']);
      expect(await cluster.authEnabled()).toBe(true);
      // etcd's HTTP endpoints behind the same client-certificate auth: the cluster version a backup records,
      // and the defragmentation gauge reconcile's one-at-a-time guard reads.
      expect(await cluster.clusterVersion(url)).toMatch(/^3\.\d+\.0$/);
      expect(await cluster.defragmenting(url)).toBe(false);
      const chunks: Buffer[] = [];
      for await (const chunk of (await cluster.snapshot(url, 30_000)).stream) chunks.push(chunk as Buffer);
      const whole = Buffer.concat(chunks);
      expect(whole.length % 512).toBe(32);
    } finally {
      cluster.close();
    }
    const withoutCertificate = new Etcd3Cluster([url], { dialTimeoutMs: 2000, callTimeoutMs: 3000 });
    try {
      await expect(withoutCertificate.status(url)).rejects.toThrow();
      // A refused handshake is an etcd that runs: a bootstrap probe sees a cluster (without quorum), never
      // silence, which would let an agent with no data found a second cluster beside it.
      await expect(withoutCertificate.probe()).resolves.toEqual({ kind: 'no-quorum', answered: [url] });
    } finally {
      withoutCertificate.close();
    }
  });
});
