import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from '../../sandbox/world.js';
import { clientTls } from '../../testbed/pki.js';
import { waitFor } from '../../testbed/wait.js';
import { describeCertificate } from '../../core/pki/x509.js';
import { etcdctlAs, type CtlIdentity } from '../support/etcdctl.js';
import { scenarioBed, type ScenarioBed } from '../support/scenario.js';
import { uniqueName } from '../support/testbed.js';

const run = promisify(execFile);
let sb: ScenarioBed | undefined;
let started: Sandbox | undefined;

beforeAll(async () => {
  sb = await scenarioBed('security');
  started = await Sandbox.start({
    size: 3,
    workDir: path.join(sb.bed.workDir, 'security'),
    processes: sb.bed.processes,
    network: sb.bed.network,
    bundles: sb.bundles,
    awsEndpoint: process.env.AWS_ENDPOINT_URL,
    name: uniqueName('secure'),
    backupEveryMs: 0,
    reconcileEveryMs: 0,
  });
  await started.converge();
});

afterAll(async () => {
  await started?.close();
  await sb?.bed.dispose();
});

/** The sandbox and its bed, once beforeAll has made them. */
function running(): { sandbox: Sandbox; bed: ScenarioBed['bed'] } {
  if (!started || !sb) throw new Error('the sandbox did not start');
  return { sandbox: started, bed: sb.bed };
}

type Identity = CtlIdentity;
const ctl = etcdctlAs;

describe('a sandbox cluster is TLS-only with authentication on, as the stack runs it', () => {
  it('the agents turned authentication on; plaintext, certificate-less and non-user clients are refused', async () => {
    const { sandbox } = running();
    const control = clientTls();
    if (!control) throw new Error('the sandbox runs without TLS');
    const [first] = sandbox.instances();
    if (!first) throw new Error('no instance');
    const url = `https://${first.privateIp}:2379`;
    expect(sandbox.endpoints().every((e) => e.startsWith('https://'))).toBe(true);
    const root: Identity = { cacert: control.caFile, cert: control.certFile, key: control.keyFile };
    await waitFor('an agent to turn etcd authentication on', async () => /Authentication Status: true/.test((await ctl(url, ['auth', 'status'], root)).out));
    expect(await ctl(url, ['put', 'probe', 'v'], root)).toMatchObject({ ok: true });

    // The node's own server certificate (CN etcd-node, signed by the client CA) is no etcd user.
    const pki = path.join(`${sandbox.fleet.node(first.instanceId).dataDir}.pki`, 'current');
    const server: Identity = { cacert: control.caFile, cert: path.join(pki, 'server.crt'), key: path.join(pki, 'server.key') };
    expect(describeCertificate(readFileSync(server.cert ?? '', 'utf8')).commonName).toBe('etcd-node');
    // The member answers (the root put above went through it); each of these is refused for what it is.
    const refusals: Array<[string, { ok: boolean; out: string }, RegExp]> = [
      ['plaintext', await ctl(`http://${first.privateIp}:2379`, ['get', 'probe'], {}), /error reading server preface: (EOF|connection reset by peer)/],
      // TLS 1.3: the server's alert may arrive after the client's write already failed on the closed socket
      // (CI saw it for the certificate-less client and for the peer certificate alike).
      ['TLS without a client certificate', await ctl(url, ['get', 'probe'], { cacert: control.caFile }), /tls: certificate required|write: broken pipe|connection reset/],
      ["the peer certificate (the peer CA's) as a client", await ctl(url, ['get', 'probe'], { cacert: control.caFile, cert: path.join(pki, 'peer.crt'), key: path.join(pki, 'peer.key') }), /tls: unknown certificate authority|write: broken pipe|connection reset/],
      ['the server certificate (no etcd user)', await ctl(url, ['get', 'probe'], server), /permission denied/i],
    ];
    for (const [why, r, says] of refusals) {
      expect(r.ok, `${why}: ${r.out}`).toBe(false);
      expect(r.out, why).not.toMatch(/^v$/m);
      expect(r.out, why).toMatch(says);
    }
  });

  it("gives an operator's own etcd user a certificate through a node (README steps): it may do what its role allows, nothing else", async () => {
    const { sandbox, bed } = running();
    const [node] = sandbox.instances();
    if (!node) throw new Error('no instance');
    const url = `https://${node.privateIp}:2379`;
    // On the node: etcdctl with the agent's certificate (its user has the root role) creates a role and a user.
    const pki = path.join(`${sandbox.fleet.node(node.instanceId).dataDir}.pki`, 'current');
    const agent: Identity = { cacert: path.join(pki, 'client-ca.crt'), cert: path.join(pki, 'client.crt'), key: path.join(pki, 'client.key') };
    for (const args of [
      ['role', 'add', 'app'],
      ['role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix=true'],
      ['user', 'add', 'alice', '--no-password'],
      ['user', 'grant-role', 'alice', 'app'],
    ]) {
      const r = await ctl(url, args, agent);
      expect(r, args.join(' ')).toMatchObject({ ok: true });
    }
    // The operator's key never leaves their machine: only the CSR goes to the node.
    const dir = path.join(bed.workDir, 'alice');
    mkdirSync(dir, { recursive: true });
    const csr = (name: string, subject: string) =>
      run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, `${name}.key`), '-subj', subject, '-out', path.join(dir, `${name}.csr`)]);
    await csr('alice', '/CN=alice');
    const issued = await sandbox.fleet.command(node.instanceId, ['user-certificate', '--csr', path.join(dir, 'alice.csr')]);
    expect(issued, issued.stderr).toMatchObject({ code: 0 });
    writeFileSync(path.join(dir, 'alice.crt'), issued.stdout);
    expect(describeCertificate(issued.stdout, readFileSync(agent.cacert ?? '', 'utf8'))).toMatchObject({ commonName: 'alice', ips: [], dnsNames: [], signedByCa: true });
    const alice: Identity = { cacert: agent.cacert, cert: path.join(dir, 'alice.crt'), key: path.join(dir, 'alice.key') };
    expect(await ctl(url, ['put', 'app/greeting', 'hello'], alice)).toMatchObject({ ok: true });
    expect((await ctl(url, ['get', 'app/greeting', '--print-value-only'], alice)).out.trim()).toBe('hello');
    const outside = await ctl(url, ['put', 'other/key', 'x'], alice);
    expect(outside.ok).toBe(false);
    expect(outside.out).toMatch(/permission denied/i);
    const snapshot = await ctl(url, ['snapshot', 'save', path.join(dir, 'stolen.db')], alice);
    expect(snapshot.ok).toBe(false);
    expect(snapshot.out).toMatch(/permission denied/i);
    // The control plane's users have no password: naming one with any password buys alice nothing.
    for (const user of ['root:', 'root:root', 'etcd-aws-agent:']) {
      const r = await ctl(url, ['--user', user, 'put', 'other/by-password', 'x'], alice);
      expect(r.ok, `${user}: ${r.out}`).toBe(false);
      expect(r.out, user).toMatch(/permission denied|authentication failed|invalid user ID or password/i);
    }

    // The control plane's names are not for users, and the node says why.
    await csr('root', '/CN=root');
    const asRoot = await sandbox.fleet.command(node.instanceId, ['user-certificate', '--csr', path.join(dir, 'root.csr')]);
    expect(asRoot.code).toBe(1);
    expect(asRoot.stderr).toMatch(/refused: csr-user-name: "root" is the control plane's own identity/);
    expect(asRoot.stdout).toBe('');
  });
});
