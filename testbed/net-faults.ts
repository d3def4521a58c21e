import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { claimOwnerAlive, type LoopbackNetwork } from './network.js';

/**
 * Network faults between the simulated instances of one loopback network (127.N.0.0/16), as a partition or
 * a slow link does them in a VPC, while every instance keeps reaching the AWS emulator (on 127.0.0.1).
 *
 * A loopback connection leaves from 127.0.0.1 whatever process opens it, so packets cannot be told apart by
 * source address. Each instance's processes (its agent, and the etcd the agent starts) run instead in a
 * cgroup v2 directory of their own, and packet filters match on it (`iptables -m cgroup --path`, OUTPUT
 * chain): packets from one side's cgroups to the other side's addresses are dropped, and packets from
 * processes outside every instance (the test process: the writer, the Lambda handlers, the NLB) to the
 * addresses of the sides they are not on. A slow link is a rate limit (an htb class on lo, which packets
 * join through iptables' CLASSIFY target) on an instance's peer traffic; this kernel has no netem, so there
 * is no added delay, only less bandwidth.
 *
 * Everything is this network's own and on 127.0.0.0/8 only: an iptables chain per table named after the
 * network's octet, jumped to only for destinations in 127.N.0.0/16, and a cgroup tree under
 * etcd-aws-testbed/N. `close` removes them; so does an exit hook if the process ends without it, and the
 * next NetworkFaults removes what a process killed outright left behind (its claim's owner is dead).
 */
export class NetworkFaults {
  private readonly chain: string;
  private readonly cgroupRoot: string;
  private readonly cgroupRel: string;
  private readonly dest: string;
  /** Instance ID → its address, for every instance that has a cgroup. */
  private readonly nodes = new Map<string, string>();
  private partitioned = false;
  private readonly limits = new Set<string>();
  private closed = false;
  private readonly onExit = () => this.removeAll();

  private constructor(
    private readonly network: LoopbackNetwork,
    private readonly unified: string,
  ) {
    this.chain = `EAWS-${network.octet}`;
    this.cgroupRel = path.posix.join(CGROUP_TREE, String(network.octet));
    this.cgroupRoot = path.join(unified, this.cgroupRel);
    this.dest = `127.${network.octet}.0.0/16`;
  }

  /**
   * Sets up the network's chains and cgroup tree, after removing what dead owners left. Fails with what to
   * do when this machine cannot do it (not root, no cgroup v2, no iptables).
   */
  static create(network: LoopbackNetwork): NetworkFaults {
    const unified = cgroup2Mount();
    if (process.getuid?.() !== 0) throw new Error('network faults need root (iptables and cgroups); run the tests as root');
    if (!unified) throw new Error('network faults need a cgroup v2 (unified) hierarchy, and none is mounted (see /proc/mounts)');
    try {
      iptables(['--version']);
    } catch (error) {
      throw new Error(`network faults need iptables: ${(error as Error).message}; run scripts/setup.sh, which installs it`);
    }
    sweepLeftovers(unified);
    const faults = new NetworkFaults(network, unified);
    faults.install();
    process.on('exit', faults.onExit);
    return faults;
  }

  private install(): void {
    mkdirSync(this.cgroupRoot, { recursive: true });
    for (const table of TABLES) {
      removeChain(table, this.chain, this.dest);
      iptables(['-t', table, '-N', this.chain]);
      iptables(['-t', table, '-A', 'OUTPUT', '-d', this.dest, '-j', this.chain]);
    }
  }

  /** The cgroup directory an instance's processes must run in (created on first use). */
  cgroupFor(instanceId: string, privateIp: string): string {
    if (!privateIp.startsWith(`127.${this.network.octet}.`)) throw new Error(`${privateIp} is not in this test bed's network ${this.dest}`);
    const dir = path.join(this.cgroupRoot, instanceId);
    mkdirSync(dir, { recursive: true });
    this.nodes.set(instanceId, privateIp);
    return dir;
  }

  private cgroupPath(instanceId: string): string {
    return path.posix.join(this.cgroupRel, instanceId);
  }

  private ipOf(instanceId: string): string {
    const ip = this.nodes.get(instanceId);
    if (!ip) throw new Error(`no cgroup for ${instanceId}: start its agent through the test bed first`);
    return ip;
  }

  /**
   * Cuts the network into `sides`: no packet passes between instances on different sides. The side
   * `outsideWith` is on (by default the largest) is the rest of the world: processes outside every instance
   * (the test process, the Lambda handlers, the client writer), instances not named, and instances launched
   * while the partition lasts are on it, as they are in a VPC where the named instances lost their links. A
   * new partition replaces the previous one.
   */
  partition(sides: ReadonlyArray<readonly string[]>, outsideWith?: string): void {
    this.heal();
    const largest = sides.reduce((best, side, i) => (side.length > (sides[best]?.length ?? 0) ? i : best), 0);
    const outside = outsideWith === undefined ? largest : sides.findIndex((side) => side.includes(outsideWith));
    if (outside < 0) throw new Error(`${outsideWith ?? ''} is on no side of the partition`);
    sides.forEach((side, k) => {
      if (k === outside) return;
      // Packets leaving a member of this side pass only to this side's addresses; packets to a member of
      // this side pass only from this side's cgroups. Everything else is dropped.
      const out = `${this.chain}-S${k}-O`;
      const into = `${this.chain}-S${k}-I`;
      iptables(['-t', 'filter', '-N', out]);
      iptables(['-t', 'filter', '-N', into]);
      for (const id of side) {
        iptables(['-t', 'filter', '-A', out, '-d', this.ipOf(id), '-j', 'RETURN']);
        iptables(['-t', 'filter', '-A', into, '-m', 'cgroup', '--path', this.cgroupPath(id), '-j', 'RETURN']);
      }
      iptables(['-t', 'filter', '-A', out, '-j', 'DROP']);
      iptables(['-t', 'filter', '-A', into, '-j', 'DROP']);
      for (const id of side) {
        iptables(['-t', 'filter', '-A', this.chain, '-m', 'cgroup', '--path', this.cgroupPath(id), '-j', out]);
        iptables(['-t', 'filter', '-A', this.chain, '-d', this.ipOf(id), '-j', into]);
      }
    });
    this.partitioned = true;
  }

  /** Removes the partition: every instance reaches every other again. */
  heal(): void {
    if (!this.partitioned) return;
    iptables(['-t', 'filter', '-F', this.chain]);
    removeSubchains('filter', this.chain);
    this.partitioned = false;
  }

  /**
   * Limits an instance's peer traffic (etcd's port 2380, both directions) to `kbit` kilobits per second:
   * a slow link, or a learner that catches up slowly.
   */
  limitPeerTraffic(instanceId: string, kbit: number): void {
    if (!Number.isInteger(kbit) || kbit < 8) throw new Error(`a rate limit must be an integer number of kbit/s, at least 8 (got ${kbit})`);
    ensureRootQdisc();
    const classId = this.classIdFor(instanceId);
    tc(['class', 'replace', 'dev', 'lo', 'parent', '1:', 'classid', classId, 'htb', 'rate', `${kbit}kbit`, 'ceil', `${kbit}kbit`]);
    const ip = this.ipOf(instanceId);
    const classify = ['-j', 'CLASSIFY', '--set-class', classId];
    for (const port of ['--dport', '--sport']) {
      iptables(['-t', 'mangle', '-A', this.chain, '-d', ip, '-p', 'tcp', port, '2380', ...classify]);
      iptables(['-t', 'mangle', '-A', this.chain, '-m', 'cgroup', '--path', this.cgroupPath(instanceId), '-p', 'tcp', port, '2380', ...classify]);
    }
    this.limits.add(instanceId);
  }

  /** Removes every rate limit of this network. */
  clearLimits(): void {
    if (this.limits.size === 0) return;
    iptables(['-t', 'mangle', '-F', this.chain]);
    for (const id of this.limits) tcQuiet(['class', 'del', 'dev', 'lo', 'classid', this.classIdFor(id)]);
    this.limits.clear();
    removeRootQdiscIfUnused();
  }

  /** htb class 1:X of an instance: unique per network and instance slot (hex minor, as tc reads it). */
  private classIdFor(instanceId: string): string {
    const slot = [...this.nodes.keys()].indexOf(instanceId);
    if (slot < 0 || slot > 60) throw new Error(`no rate-limit slot for ${instanceId}`);
    return `1:${(this.network.octet * 64 + slot + 2).toString(16)}`;
  }

  /** Heals, lifts limits, removes the chains and the cgroups (moving any process still in one to the root). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off('exit', this.onExit);
    this.removeAll();
  }

  private removeAll(): void {
    try {
      this.heal();
      this.clearLimits();
    } finally {
      for (const table of TABLES) removeChain(table, this.chain, this.dest);
      removeCgroupTree(this.unified, this.cgroupRoot);
    }
  }
}

const CGROUP_TREE = 'etcd-aws-testbed';
const TABLES = ['filter', 'mangle'] as const;

function iptables(args: readonly string[]): string {
  return execFileSync('iptables', ['-w', '5', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function tc(args: readonly string[]): void {
  execFileSync('tc', [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function tcQuiet(args: readonly string[]): void {
  try {
    tc(args);
  } catch {
    // already gone
  }
}

/** The htb root on lo that rate-limited classes hang from; unclassified traffic goes to 1:1, unlimited. */
function ensureRootQdisc(): void {
  const shown = execFileSync('tc', ['qdisc', 'show', 'dev', 'lo'], { encoding: 'utf8' });
  if (/qdisc htb 1: root/.test(shown)) return;
  tc(['qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '1', 'r2q', '100000']);
  tc(['class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '100gbit']);
}

/** Takes the htb root off lo once no network has a rate-limited class left (it is shared between them). */
function removeRootQdiscIfUnused(): void {
  const classes = execFileSync('tc', ['class', 'show', 'dev', 'lo'], { encoding: 'utf8' });
  const others = classes.split('\n').filter((l) => l.startsWith('class htb') && !l.startsWith('class htb 1:1 '));
  if (others.length === 0) tcQuiet(['qdisc', 'del', 'dev', 'lo', 'root']);
}

function removeChain(table: string, chain: string, dest: string): void {
  // The jump may have been added more than once by an interrupted run: delete until there is none.
  for (let i = 0; i < 10; i++) {
    try {
      iptables(['-t', table, '-D', 'OUTPUT', '-d', dest, '-j', chain]);
    } catch {
      break;
    }
  }
  try {
    iptables(['-t', table, '-F', chain]);
    iptables(['-t', table, '-X', chain]);
  } catch {
    // no such chain
  }
  removeSubchains(table, chain);
}

/** The chains a partition hangs off the network's chain (`<chain>-S<k>-O`, `<chain>-S<k>-I`). */
function removeSubchains(table: string, chain: string): void {
  const listed = iptables(['-t', table, '-S']);
  const escaped = chain.replace(/[-]/g, '\\-');
  const names = [...listed.matchAll(new RegExp(`^-N (${escaped}-S\\d+-[OI])$`, 'gm'))].map((m) => m[1] as string);
  for (const name of names) iptables(['-t', table, '-F', name]);
  for (const name of names) {
    try {
      iptables(['-t', table, '-X', name]);
    } catch {
      // still referenced: the main chain is flushed first, so only by a concurrent change
    }
  }
}

function removeCgroupTree(unified: string, dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(unified, path.join(dir, entry.name));
  }
  // A process still inside (it outlived its owner) moves to the root cgroup: rmdir needs the cgroup empty.
  try {
    for (const pid of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        writeFileSync(path.join(unified, 'cgroup.procs'), pid);
      } catch {
        // exited meanwhile
      }
    }
    rmdirSync(dir);
  } catch {
    // already gone, or busy: the next sweep takes it
  }
}

/** Chains and cgroups of networks whose owner is dead (a test process killed outright). */
function sweepLeftovers(unified: string): void {
  const tree = path.join(unified, CGROUP_TREE);
  const octets = new Set<number>();
  if (existsSync(tree)) for (const name of readdirSync(tree)) if (/^\d+$/.test(name)) octets.add(Number(name));
  for (const table of TABLES) {
    const listed = iptables(['-t', table, '-S']);
    for (const m of listed.matchAll(/^-N EAWS-(\d+)(?:-S\d+-[OI])?$/gm)) octets.add(Number(m[1]));
  }
  for (const octet of octets) {
    if (claimOwnerAlive(octet)) continue;
    for (const table of TABLES) removeChain(table, `EAWS-${octet}`, `127.${octet}.0.0/16`);
    removeCgroupTree(unified, path.join(tree, String(octet)));
  }
  removeRootQdiscIfUnused();
}

/** Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` or, on hybrid systems, `.../unified`). */
function cgroup2Mount(): string | undefined {
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n');
  for (const line of mounts) {
    const [, mountPoint, type] = line.split(' ');
    if (type === 'cgroup2' && mountPoint) return mountPoint;
  }
  return undefined;
}
