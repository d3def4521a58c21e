import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';

/**
 * What Lambda's SQS event source mapping does, once: receive a batch, hand it to the handler as an SQS
 * event, delete the records it acknowledged (all but its batchItemFailures). Failed records become visible
 * again after the queue's visibility timeout.
 */
export async function pollOnce(
  queueUrl: string,
  handler: (event: { Records: Array<Record<string, unknown>> }) => Promise<{ batchItemFailures: Array<{ itemIdentifier: string }> }>,
  options: { waitSeconds?: number; visibilitySeconds?: number; batchSize?: number } = {},
): Promise<{ received: number; failed: number }> {
  const sqs = new SQSClient({});
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: options.batchSize ?? 10,
      // Short polls by default: the test bed's emulator serves one request at a time, so a long poll
      // would hold up every other AWS call for its whole wait.
      WaitTimeSeconds: options.waitSeconds ?? 0,
      VisibilityTimeout: options.visibilitySeconds ?? 2,
      MessageSystemAttributeNames: ['All'],
    }),
  );
  const messages = out.Messages ?? [];
  if (messages.length === 0) return { received: 0, failed: 0 };
  const records = messages.map((m) => ({
    messageId: m.MessageId,
    receiptHandle: m.ReceiptHandle,
    body: m.Body ?? '',
    attributes: m.Attributes ?? {},
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:etcd-lifecycle',
    awsRegion: 'us-east-1',
  }));
  const { batchItemFailures } = await handler({ Records: records });
  const failed = new Set(batchItemFailures.map((f) => f.itemIdentifier));
  const done = messages.filter((m) => !failed.has(m.MessageId ?? ''));
  if (done.length > 0) {
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? '' })),
      }),
    );
  }
  return { received: messages.length, failed: failed.size };
}
