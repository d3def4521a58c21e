import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NetworkFaults } from '../../testbed/net-faults.js';
import { REPO_ROOT } from '../../testbed/tools.js';
import { waitFor } from '../../testbed/wait.js';
import { openBed, type Bed } from '../support/testbed.js';

/**
 * The test bed's network faults, on plain TCP: three "instances", each a server on its own address in its
 * own cgroup; probes run in an instance's cgroup (on its side) or in the test process (outside).
 */
let bed: Bed;
let faults: NetworkFaults;
const ids = ['i-a', 'i-b', 'i-c'] as const;
const ip: Record<string, string> = {};
const cgroup: Record<string, string> = {};

const SERVER = "require('net').createServer((s) => { s.on('data', () => {}); s.end('pong'); }).listen(2380, process.argv[1])";
// Exit 0 when the server answered, 3 when nothing came back in time, 4 on a refused or reset connection.
const PROBE =
  "const s = require('net').connect(2380, process.argv[1]); s.setTimeout(1500);" +
  "s.on('data', () => process.exit(0)); s.on('timeout', () => process.exit(3)); s.on('error', () => process.exit(4));";

let probes = 0;
/** Whether a process in `from`'s cgroup (or, for 'outside', in the test process's) reaches `to`'s server. */
async function reaches(from: string, to: string): Promise<boolean> {
  probes += 1;
  const p = bed.processes.spawn(`probe ${from}→${to}`, process.execPath, ['-e', PROBE, ip[to] ?? ''], {
    logFile: path.join(bed.workDir, `probe-${probes}.log`),
    ...(from === 'outside' ? {} : { cgroup: cgroup[from] }),
  });
  return (await p.exited) === 0;
}

async function reachability(): Promise<string[]> {
  const pairs = [...ids, 'outside'].flatMap((from) => ids.filter((to) => to !== from).map((to) => [from, to] as const));
  const answered = await Promise.all(pairs.map(([from, to]) => reaches(from, to)));
  return pairs.filter((_, i) => answered[i]).map(([from, to]) => `${from}→${to}`);
}

beforeAll(async () => {
  bed = openBed('net-faults');
  faults = NetworkFaults.create(bed.network);
  ids.forEach((id, i) => {
    ip[id] = `127.${bed.network.octet}.1.${10 + i}`;
    cgroup[id] = faults.cgroupFor(id, ip[id]);
    bed.processes.spawn(`server ${id}`, process.execPath, ['-e', SERVER, ip[id]], { logFile: path.join(bed.workDir, `${id}.log`), cgroup: cgroup[id] });
  });
  await waitFor('the three servers answer', async () => (await Promise.all(ids.map((id) => reaches('outside', id)))).every(Boolean), {
    timeoutMs: 20_000,
    intervalMs: 200,
  });
});

afterAll(async () => {
  faults.close();
  await bed.dispose();
});

const ALL = ['i-a→i-b', 'i-a→i-c', 'i-b→i-a', 'i-b→i-c', 'i-c→i-a', 'i-c→i-b', 'outside→i-a', 'outside→i-b', 'outside→i-c'];

describe('network faults', () => {
  it('runs each instance in its own cgroup', () => {
    for (const id of ids) expect(execFileSync('cat', [path.join(cgroup[id] ?? '', 'cgroup.procs')], { encoding: 'utf8' }).trim()).not.toBe('');
  });

  afterEach(() => faults.heal());

  it('isolates one instance from its peers and from the outside, keeps the majority whole, and heals', async () => {
    expect(await reachability()).toEqual(ALL);
    faults.partition([['i-a'], ['i-b', 'i-c']]);
    expect(await reachability()).toEqual(['i-b→i-c', 'i-c→i-b', 'outside→i-b', 'outside→i-c']);
    faults.heal();
    expect(await reachability()).toEqual(ALL);
  });

  it('puts the outside on the side it is told to', async () => {
    faults.partition([['i-a'], ['i-b', 'i-c']], 'i-a');
    expect(await reachability()).toEqual(['i-b→i-c', 'i-c→i-b', 'outside→i-a']);
  });

  it('puts instances it was not told about (and those launched later) on the outside\'s side', async () => {
    faults.partition([['i-a'], ['i-b']], 'i-b');
    expect(await reachability()).toEqual(['i-b→i-c', 'i-c→i-b', 'outside→i-b', 'outside→i-c']);
  });

  it('keeps two cut-off sides apart from each other and from the rest', async () => {
    faults.partition([['i-a'], ['i-b'], ['i-c']], 'i-c');
    expect(await reachability()).toEqual(['outside→i-c']);
  });

  it('rate-limits an instance peer traffic through its own htb class, and lifts the limit', async () => {
    faults.limitPeerTraffic('i-b', 800);
    const classes = () => execFileSync('tc', ['-s', 'class', 'show', 'dev', 'lo'], { encoding: 'utf8' });
    expect(classes()).toMatch(/rate 800Kbit ceil 800Kbit/);
    // Traffic to and from its port 2380 goes through the class: its byte counter moves.
    const sentThroughLimit = () => Number(/rate 800Kbit ceil 800Kbit[\s\S]*?Sent (\d+) bytes/.exec(classes())?.[1] ?? '0');
    const before = sentThroughLimit();
    expect(await reaches('i-a', 'i-b')).toBe(true);
    expect(sentThroughLimit()).toBeGreaterThan(before);
    faults.clearLimits();
    expect(classes()).not.toMatch(/800Kbit/);
  });

  it('removes its chains and cgroups on close', () => {
    const chains = () => execFileSync('iptables', ['-w', '5', '-S'], { encoding: 'utf8' });
    expect(chains()).toContain(`-N EAWS-${bed.network.octet}`);
    faults.partition([['i-a'], ['i-b', 'i-c']]);
    faults.close();
    expect(chains()).not.toContain(`EAWS-${bed.network.octet}`);
    expect(execFileSync('iptables', ['-w', '5', '-t', 'mangle', '-S'], { encoding: 'utf8' })).not.toContain(`EAWS-${bed.network.octet}`);
    for (const id of ids) expect(existsSync(cgroup[id] ?? '')).toBe(false);
  });

  it('removes what an owner killed outright left behind, when the next one starts', async () => {
    // A process that claims a network, partitions it, says so, and is then killed with SIGKILL (no exit hook runs).
    const script = [
      "import { claimLoopbackNetwork } from './testbed/network.ts';",
      "import { NetworkFaults } from './testbed/net-faults.ts';",
      'const network = claimLoopbackNetwork();',
      'const faults = NetworkFaults.create(network);',
      "const ip = `127.${network.octet}.1.10`;",
      "faults.cgroupFor('i-x', ip);",
      "faults.cgroupFor('i-y', `127.${network.octet}.1.11`);",
      "faults.partition([['i-x'], ['i-y']]);",
      'console.log(`ready ${network.octet}`);',
      'setInterval(() => {}, 1000);',
    ].join('\n');
    const log = path.join(bed.workDir, 'dead-owner.log');
    const owner = bed.processes.spawn('dead owner', process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { logFile: log, cwd: REPO_ROOT });
    const octet = await waitFor('the owner partitioned its network', () => /ready (\d+)/.exec(readFileSync(log, 'utf8'))?.[1], { timeoutMs: 30_000, intervalMs: 200 });
    const chains = () => execFileSync('iptables', ['-w', '5', '-S'], { encoding: 'utf8' });
    expect(chains()).toContain(`-N EAWS-${octet}`);
    await bed.processes.kill(owner);
    expect(chains()).toContain(`-N EAWS-${octet}`);
    const next = NetworkFaults.create(bed.network);
    try {
      expect(chains()).not.toContain(`EAWS-${octet} `);
      expect(chains()).not.toContain(`-N EAWS-${octet}`);
    } finally {
      next.close();
    }
  });
});
