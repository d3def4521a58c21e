import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { etcd3Credentials } from '../testbed/pki.js';

/** One acknowledged write: etcd answered the Put, so the cluster promised to keep it. */
export interface AckedWrite {
  readonly seq: number;
  readonly key: string;
  /** The revision etcd gave the write (from the Put response header). */
  readonly revision: bigint;
  readonly ackedAt: number;
}

export interface WriterReport {
  readonly attempts: number;
  readonly acked: number;
  readonly failedAttempts: number;
  /** Longest time between two consecutive acknowledged writes, in ms: what a client saw as unavailability. */
  readonly longestUnavailableMs: number;
  /** When that longest window started (ms since epoch), for the timeline. */
  readonly longestUnavailableFrom: number | undefined;
}

export interface WriteCheck {
  readonly present: number;
  /** Acknowledged writes missing from the cluster (or present with another value). */
  readonly lost: readonly AckedWrite[];
}

const CALL_TIMEOUT_MS = 1500;

/**
 * A client that writes sequence-numbered keys through the cluster, one at a time, the way an application
 * with the cluster's endpoint list does: each write goes to the endpoint that last answered, and on an error
 * to the next one, until one acknowledges it. It records every acknowledgement, so a scenario can check
 * afterwards that none was lost, and how long the cluster was unavailable to it.
 */
export class SequenceWriter {
  readonly prefix: string;
  private readonly clients = new Map<string, Etcd3>();
  private readonly acks: AckedWrite[] = [];
  private attempts = 0;
  private failedAttempts = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private preferred = 0;
  private lastError = '';

  constructor(
    /** The client URLs to use right now (the group's instances change during a scenario). */
    private readonly endpoints: () => readonly string[],
    options: { prefix?: string; intervalMs?: number } = {},
  ) {
    this.prefix = options.prefix ?? `/sandbox/writes/${Date.now().toString(36)}/`;
    this.intervalMs = options.intervalMs ?? 50;
  }

  private readonly intervalMs: number;

  get acknowledged(): readonly AckedWrite[] {
    return this.acks;
  }

  /** The newest error a write attempt met, for progress output. */
  get latestError(): string {
    return this.lastError;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  report(until = Date.now()): WriterReport {
    let longest = 0;
    let from: number | undefined;
    for (let i = 1; i < this.acks.length; i += 1) {
      const gap = this.acks[i]!.ackedAt - this.acks[i - 1]!.ackedAt;
      if (gap > longest) {
        longest = gap;
        from = this.acks[i - 1]!.ackedAt;
      }
    }
    // A window still open at the end counts too.
    const last = this.acks.at(-1);
    if (last && until - last.ackedAt > longest) {
      longest = until - last.ackedAt;
      from = last.ackedAt;
    }
    return { attempts: this.attempts, acked: this.acks.length, failedAttempts: this.failedAttempts, longestUnavailableMs: longest, longestUnavailableFrom: from };
  }

  /**
   * Reads every key under the prefix (a linearizable read through any endpoint) and compares it with the
   * acknowledged writes.
   */
  async check(endpoints: readonly string[], acked: readonly AckedWrite[] = this.acks): Promise<WriteCheck> {
    const client = new Etcd3({ hosts: [...endpoints], ...etcd3Credentials(), grpcOptions: { 'grpc.max_receive_message_length': -1 } });
    try {
      const stored = await client.getAll().prefix(this.prefix).strings();
      const lost = acked.filter((w) => stored[w.key] !== valueOf(w.seq));
      return { present: acked.length - lost.length, lost };
    } finally {
      client.close();
    }
  }

  private client(endpoint: string): Etcd3 {
    let client = this.clients.get(endpoint);
    if (!client) {
      client = new Etcd3({
        hosts: [endpoint],
        ...etcd3Credentials(),
        dialTimeout: 1000,
        // Failover is this writer's own loop over the endpoints: no hidden retries that blur the timings.
        faultHandling: { host: () => noop, global: noop },
        defaultCallOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }),
      });
      this.clients.set(endpoint, client);
    }
    return client;
  }

  private async run(): Promise<void> {
    let seq = 1;
    while (this.running) {
      const endpoints = this.endpoints();
      // Clients of endpoints that left the group are closed.
      for (const [url, c] of this.clients) {
        if (!endpoints.includes(url)) {
          c.close();
          this.clients.delete(url);
        }
      }
      if (endpoints.length === 0) {
        await pause(100);
        continue;
      }
      const endpoint = endpoints[this.preferred % endpoints.length]!;
      const key = `${this.prefix}${String(seq).padStart(8, '0')}`;
      this.attempts += 1;
      try {
        const out = await this.client(endpoint).put(key).value(valueOf(seq)).exec();
        this.acks.push({ seq, key, revision: BigInt(out.header.revision), ackedAt: Date.now() });
        seq += 1;
        await pause(this.intervalMs);
      } catch (error) {
        this.failedAttempts += 1;
        this.lastError = `${endpoint}: ${error instanceof Error ? error.message : String(error)}`;
        this.preferred += 1;
        // The same sequence number again: a write that failed may still have been applied, which is fine.
        await pause(50);
      }
    }
  }
}

function valueOf(seq: number): string {
  return `write ${seq}`;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
