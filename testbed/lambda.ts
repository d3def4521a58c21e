import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { emulatorEnv } from './moto.js';

const run = promisify(execFile);

/** The environment a handler runs with in the test bed: the emulator, short etcd deadlines, then `extra`. */
export function handlerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    ...emulatorEnv(process.env.AWS_ENDPOINT_URL as string),
    ETCD_AWS_DIAL_TIMEOUT_MS: '1000',
    ETCD_AWS_CALL_TIMEOUT_MS: '2000',
    ...extra,
  };
}

export interface Invocation<T> {
  readonly result: T;
  /** Every JSON line the handler printed (stdout and stderr): Powertools log lines and EMF metric documents. */
  readonly lines: ReadonlyArray<Record<string, unknown>>;
}

/**
 * Invokes a built Lambda bundle's `handler` in a fresh node process (a cold start, as in Lambda), with
 * exactly the given environment, and returns its result plus its JSON output lines.
 */
export async function invokeBundle<T>(bundle: string, event: unknown, env: NodeJS.ProcessEnv): Promise<Invocation<T>> {
  // A thrown error is printed as one ERROR line: node would otherwise print the minified source line. The
  // invocation ends when the handler returns, as in Lambda (which freezes the environment then): connections
  // it left open, e.g. to a member a partition blackholes, do not keep it going.
  const script = `
    let out;
    try {
      const m = await import(${JSON.stringify(pathToFileURL(bundle).href)});
      const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'test';
      const context = { functionName, invokedFunctionArn: 'arn:aws:lambda:' + (process.env.AWS_REGION ?? 'us-east-1') + ':123456789012:function:' + functionName, awsRequestId: 'req-1', getRemainingTimeInMillis: () => 60000 };
      const result = await m.handler(JSON.parse(process.env.TEST_EVENT), context);
      out = '\\nRESULT ' + JSON.stringify(result ?? null) + '\\n';
    } catch (error) {
      out = '\\nERROR ' + JSON.stringify(String(error?.message ?? error)) + '\\n';
    }
    process.stdout.write(out, () => process.exit(0));`;
  const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...env, TEST_EVENT: JSON.stringify(event) },
    timeout: 120_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const lines = stdout.split('\n');
  const errorLine = lines.find((l) => l.startsWith('ERROR '));
  if (errorLine) throw new Error(`the handler threw: ${JSON.parse(errorLine.slice(6)) as string}`);
  const resultLine = lines.find((l) => l.startsWith('RESULT '));
  if (!resultLine) throw new Error(`the handler printed no result:\n${stdout}`);
  // Powertools writes WARN and ERROR through console.warn/console.error, i.e. to stderr.
  const json = [...lines, ...stderr.split('\n')].flatMap((l) => {
    if (!l.startsWith('{')) return [];
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  return { result: JSON.parse(resultLine.slice(7)) as T, lines: json };
}

/** An SQS event carrying the given bodies, as Lambda's event source mapping delivers it. */
export function sqsEvent(bodies: readonly string[]): { Records: Array<Record<string, unknown>> } {
  return {
    Records: bodies.map((body, i) => ({
      messageId: `msg-${i + 1}`,
      receiptHandle: `rh-${i + 1}`,
      body,
      attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(Date.now()), SenderId: 'AROA', ApproximateFirstReceiveTimestamp: String(Date.now()) },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:etcd-lifecycle',
      awsRegion: 'us-east-1',
    })),
  };
}

/**
 * Delivers an SQS batch the way the event source mapping does: failed records come back after the
 * visibility timeout (here `retryMs`) until the handler acknowledges them, within a bounded deadline.
 * Returns every invocation, so tests can see the failures on the way.
 */
export async function deliverUntilAcknowledged(
  bundle: string,
  bodies: readonly string[],
  env: NodeJS.ProcessEnv,
  { retryMs = 1000, timeoutMs = 60_000 } = {},
): Promise<Array<Invocation<{ batchItemFailures: Array<{ itemIdentifier: string }> }>>> {
  const deadline = Date.now() + timeoutMs;
  const invocations: Array<Invocation<{ batchItemFailures: Array<{ itemIdentifier: string }> }>> = [];
  let pending = sqsEvent(bodies).Records;
  for (;;) {
    const invocation = await invokeBundle<{ batchItemFailures: Array<{ itemIdentifier: string }> }>(bundle, { Records: pending }, env);
    invocations.push(invocation);
    const failed = new Set(invocation.result.batchItemFailures.map((f) => f.itemIdentifier));
    pending = pending.filter((r) => failed.has(r.messageId as string));
    if (pending.length === 0) return invocations;
    if (Date.now() > deadline) {
      const errors = invocation.lines.filter((l) => l.level === 'WARN' || l.level === 'ERROR').map((l) => l.error ?? l.message);
      throw new Error(`SQS records ${[...failed].join(', ')} were still failing after ${timeoutMs / 1000}s: ${JSON.stringify(errors)}`);
    }
    await new Promise((r) => setTimeout(r, retryMs));
  }
}
