import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { invokeBundle } from './lambda.js';

/** One invocation the service ran: its function, its event, and how it ended. */
export interface ServiceInvocation {
  readonly functionName: string;
  readonly payload: unknown;
  readonly type: string;
  attempts: number;
  outcome?: { readonly result: unknown } | { readonly error: string };
}

export interface LambdaService {
  /** Value for AWS_ENDPOINT_URL_LAMBDA. */
  readonly endpoint: string;
  readonly invocations: readonly ServiceInvocation[];
  close(): Promise<void>;
}

/**
 * Lambda's Invoke API for the built bundles, as one function invokes another: `Event` invocations are
 * accepted at once (202) and run in the background, a failure retried twice as Lambda does for asynchronous
 * invocations; `RequestResponse` runs and answers with the result. Each run is a cold start of the bundle.
 */
export async function startLambdaService(functions: Readonly<Record<string, { bundle: string; env: () => NodeJS.ProcessEnv }>>): Promise<LambdaService> {
  const invocations: ServiceInvocation[] = [];
  const running = new Set<Promise<void>>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const name = decodeURIComponent(/^\/2015-03-31\/functions\/([^/]+)\/invocations/.exec(req.url ?? '')?.[1] ?? '');
      const fn = functions[name];
      if (!fn) {
        res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-errortype': 'ResourceNotFoundException' }).end(JSON.stringify({ Type: 'User', message: `Function not found: ${name}` }));
        return;
      }
      const payload: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
      const type = String(req.headers['x-amz-invocation-type'] ?? 'RequestResponse');
      const invocation: ServiceInvocation = { functionName: name, payload, type, attempts: 0 };
      invocations.push(invocation);
      const attempt = async (): Promise<unknown> => {
        invocation.attempts += 1;
        return (await invokeBundle(fn.bundle, payload, fn.env())).result;
      };
      if (type === 'Event') {
        res.writeHead(202).end();
        const run = (async () => {
          for (let tries = 0; tries < 3; tries += 1) {
            try {
              invocation.outcome = { result: await attempt() };
              return;
            } catch (error) {
              invocation.outcome = { error: (error as Error).message };
            }
          }
        })();
        running.add(run);
        void run.finally(() => running.delete(run));
        return;
      }
      try {
        const result = await attempt();
        invocation.outcome = { result };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
      } catch (error) {
        invocation.outcome = { error: (error as Error).message };
        res.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' }).end(JSON.stringify({ errorMessage: (error as Error).message }));
      }
    })().catch((error: unknown) => res.writeHead(500).end(String(error)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    invocations,
    close: async () => {
      await Promise.allSettled([...running]);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
