import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { claimOwnerAliveAt, tryClaimDir } from './claims.js';

/**
 * A /16 of the loopback range (127.N.0.0/16) claimed by one test file or sandbox, so that parallel users
 * never bind the same 127.x address with etcd's standard ports 2379/2380. Linux answers on all of
 * 127.0.0.0/8 without configuration. The claim is a directory created atomically, holding the owner's PID;
 * a claim whose owner is dead is taken over.
 */
export interface LoopbackNetwork {
  /** The second octet N of 127.N.0.0/16. */
  readonly octet: number;
  /** The VPC CIDR to create in the emulator: its subnets hand out these loopback addresses as private IPs. */
  readonly vpcCidr: string;
  /** Three /24 subnets, one per simulated availability zone. */
  readonly subnetCidrs: readonly [string, string, string];
  /** An address outside the subnets, for etcd nodes started without an instance (127.N.200.i). */
  readonly hostAddress: (i: number) => string;
  release(): void;
}

const CLAIMS = path.join(os.tmpdir(), 'etcd-aws-loopback-claims');
const FIRST = 10;
const LAST = 250;

export function claimLoopbackNetwork(): LoopbackNetwork {
  mkdirSync(CLAIMS, { recursive: true });
  const start = FIRST + Math.floor(Math.random() * (LAST - FIRST + 1));
  for (let k = 0; k <= LAST - FIRST; k++) {
    const octet = FIRST + ((start - FIRST + k) % (LAST - FIRST + 1));
    if (!tryClaimDir(path.join(CLAIMS, String(octet)))) continue;
    return {
      octet,
      vpcCidr: `127.${octet}.0.0/16`,
      subnetCidrs: [`127.${octet}.1.0/24`, `127.${octet}.2.0/24`, `127.${octet}.3.0/24`],
      hostAddress: (i) => `127.${octet}.200.${i}`,
      release: () => rmSync(path.join(CLAIMS, String(octet)), { recursive: true, force: true }),
    };
  }
  throw new Error(`every loopback /16 from 127.${FIRST} to 127.${LAST} is claimed; see ${CLAIMS}`);
}

/** Whether a live process holds the claim on 127.N.0.0/16 (what it set up may not be taken away). */
export function claimOwnerAlive(octet: number): boolean {
  return claimOwnerAliveAt(path.join(CLAIMS, String(octet)));
}
