import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { TerminationNotice } from '../domain/lifecycle-events.js';
import { EtcdAwsError } from '../errors.js';

/**
 * Hands the final backup of a scale-in to zero to the backup function, asynchronously (Event): it may take
 * longer than the lifecycle function may run. Lambda retries it twice on failure, then sends it to the
 * function's on-failure destination.
 */
export class LambdaFinalBackup {
  constructor(
    private readonly lambda: LambdaClient,
    private readonly functionName: string,
  ) {}

  async start(notice: TerminationNotice): Promise<void> {
    const out = await this.lambda.send(
      new InvokeCommand({ FunctionName: this.functionName, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify({ finalBackupFor: notice })) }),
    );
    if (out.StatusCode !== 202) {
      throw new EtcdAwsError(`the backup function ${this.functionName} did not accept the final backup (status ${String(out.StatusCode)})`, { retryable: true });
    }
  }
}
