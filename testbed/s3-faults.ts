import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Downloads of one object to cut: the next `times` GETs of `key` stop after `afterBytes` bytes of the body. */
interface CutRule {
  readonly key: string;
  remaining: number;
  readonly afterBytes: number;
}

/**
 * S3 between the agents and the emulator, with the faults a real network adds to downloads: it forwards every
 * request as it is, except that it can cut chosen downloads part-way (the status and Content-Length are sent,
 * then the connection is dropped after some bytes), as a reset connection or a failing NAT does to a large
 * GetObject. The agents reach it through AWS_ENDPOINT_URL_S3, so their code is the code that runs in AWS.
 */
export class S3FaultProxy {
  private readonly rules: CutRule[] = [];
  /** Every download cut so far, in order. */
  readonly cuts: Array<{ key: string; sentBytes: number; ofBytes: number }> = [];

  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
  ) {}

  static async start(upstream: string): Promise<S3FaultProxy> {
    const target = new URL(upstream);
    const started: { proxy?: S3FaultProxy } = {};
    const server = createServer((req, res) => started.proxy?.forward(target, req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    started.proxy = new S3FaultProxy(server, `http://127.0.0.1:${port}`);
    return started.proxy;
  }

  /** The next `times` downloads of `key` (path-style or virtual-hosted) are cut after `afterBytes` bytes. */
  cutDownloads(key: string, times: number, afterBytes: number): void {
    this.rules.push({ key, remaining: times, afterBytes });
  }

  private ruleFor(req: IncomingMessage): CutRule | undefined {
    if (req.method !== 'GET') return undefined;
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    return this.rules.find((r) => r.remaining > 0 && path.endsWith(`/${r.key}`));
  }

  private forward(target: URL, req: IncomingMessage, res: ServerResponse): void {
    const rule = this.ruleFor(req);
    if (rule) rule.remaining -= 1;
    const out = request(
      { hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (!rule || (answer.statusCode ?? 0) >= 300) {
          answer.pipe(res);
          return;
        }
        // The status and headers go out at once: the cut falls in the body, as it does mid-download.
        res.flushHeaders();
        const ofBytes = Number(answer.headers['content-length'] ?? 0);
        let sent = 0;
        answer.on('data', (chunk: Buffer) => {
          if (sent >= rule.afterBytes) return;
          const part = chunk.subarray(0, rule.afterBytes - sent);
          sent += part.length;
          if (sent < rule.afterBytes) {
            res.write(part);
            return;
          }
          this.cuts.push({ key: rule.key, sentBytes: sent, ofBytes });
          answer.destroy();
          // Drop the connection once those bytes are out, without ending the response: the client has the
          // headers and part of the body, then the connection closes.
          res.write(part, () => res.socket?.destroy());
        });
        // A body shorter than the cut point arrives whole.
        answer.on('end', () => res.end());
      },
    );
    out.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502).end(String(error));
      else res.socket?.destroy();
    });
    req.pipe(out);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
