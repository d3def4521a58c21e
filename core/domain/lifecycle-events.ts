import * as z from 'zod';

/**
 * The termination notice, whatever way it arrived. Shapes, from the Auto Scaling documentation
 * (https://docs.aws.amazon.com/autoscaling/ec2/userguide/prepare-for-lifecycle-notifications.html):
 * the hook's own JSON in an SQS body; an EventBridge event `EC2 Instance-terminate Lifecycle Action`,
 * directly or as an SQS body; `autoscaling:TEST_NOTIFICATION` when a hook is created.
 */
export interface TerminationNotice {
  readonly groupName: string;
  readonly hookName: string;
  readonly instanceId: string;
  readonly token: string;
  /** When Auto Scaling sent it (ISO 8601), for the removal latency metric. */
  readonly time: string | undefined;
}

export type LifecycleMessage =
  | { readonly kind: 'termination'; readonly notice: TerminationNotice }
  | { readonly kind: 'test-notification'; readonly groupName: string | undefined }
  | { readonly kind: 'other-transition'; readonly transition: string; readonly groupName: string | undefined }
  | { readonly kind: 'invalid'; readonly reason: string };

const hookBody = z.object({
  LifecycleTransition: z.string(),
  AutoScalingGroupName: z.string().min(1),
  LifecycleHookName: z.string().min(1),
  EC2InstanceId: z.string().regex(/^i-[0-9a-f]+$/),
  LifecycleActionToken: z.string().min(1),
  Time: z.string().optional(),
});

const testNotification = z.object({
  Event: z.literal('autoscaling:TEST_NOTIFICATION'),
  AutoScalingGroupName: z.string().optional(),
});

const eventBridge = z.object({
  source: z.literal('aws.autoscaling'),
  'detail-type': z.string(),
  time: z.string().optional(),
  detail: z.record(z.string(), z.unknown()),
});

const TERMINATING = 'autoscaling:EC2_INSTANCE_TERMINATING';

function fromHook(body: z.infer<typeof hookBody>, time: string | undefined): LifecycleMessage {
  if (body.LifecycleTransition !== TERMINATING) {
    return { kind: 'other-transition', transition: body.LifecycleTransition, groupName: body.AutoScalingGroupName };
  }
  return {
    kind: 'termination',
    notice: {
      groupName: body.AutoScalingGroupName,
      hookName: body.LifecycleHookName,
      instanceId: body.EC2InstanceId,
      token: body.LifecycleActionToken,
      time: body.Time ?? time,
    },
  };
}

/** Classifies an already-parsed JSON value: hook body, test notification or EventBridge event. Pure. */
export function classifyLifecycleMessage(value: unknown): LifecycleMessage {
  const test = testNotification.safeParse(value);
  if (test.success) return { kind: 'test-notification', groupName: test.data.AutoScalingGroupName };
  const event = eventBridge.safeParse(value);
  if (event.success) {
    const detail = hookBody.safeParse(event.data.detail);
    if (!detail.success) {
      return { kind: 'invalid', reason: `EventBridge ${event.data['detail-type']} without a lifecycle action: ${detail.error.issues[0]?.message ?? ''}` };
    }
    return fromHook(detail.data, event.data.time);
  }
  const hook = hookBody.safeParse(value);
  if (hook.success) return fromHook(hook.data, undefined);
  const issue = hook.error.issues[0];
  return { kind: 'invalid', reason: `not a lifecycle hook message: ${issue ? `${issue.path.join('.')} ${issue.message}` : 'unknown shape'}` };
}

/** Parses an SQS message body (a JSON string) into a lifecycle message; never throws. */
export function parseLifecycleBody(body: string): LifecycleMessage {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { kind: 'invalid', reason: `body is not JSON (${body.length} bytes)` };
  }
  return classifyLifecycleMessage(value);
}

const noticeSchema = z.object({
  groupName: z.string().min(1),
  hookName: z.string().min(1),
  instanceId: z.string().regex(/^i-[0-9a-f]+$/),
  token: z.string().min(1),
  time: z.string().optional(),
});

/**
 * What the lifecycle function hands the backup function when the last voting member terminates (a scale-in to
 * zero): the notice whose instance waits until the final backup is taken. Undefined for any other event (a
 * schedule, a manual invoke). Pure.
 */
export function finalBackupRequest(event: unknown): TerminationNotice | undefined {
  const parsed = z.object({ finalBackupFor: noticeSchema }).safeParse(event);
  if (!parsed.success) return undefined;
  const n = parsed.data.finalBackupFor;
  return { groupName: n.groupName, hookName: n.hookName, instanceId: n.instanceId, token: n.token, time: n.time };
}
