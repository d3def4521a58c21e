import {
  AutoScalingClient,
  AutoScalingServiceException,
  CompleteLifecycleActionCommand,
  RecordLifecycleActionHeartbeatCommand,
} from '@aws-sdk/client-auto-scaling';
import type { TerminationNotice } from '../domain/lifecycle-events.js';
import type { LifecycleActions } from '../ports.js';

/** CompleteLifecycleAction / RecordLifecycleActionHeartbeat with the notice's token. */
export class AwsLifecycleActions implements LifecycleActions {
  constructor(private readonly autoScaling: AutoScalingClient) {}

  async complete(notice: TerminationNotice): Promise<'completed' | 'already-completed'> {
    try {
      await this.autoScaling.send(
        new CompleteLifecycleActionCommand({
          AutoScalingGroupName: notice.groupName,
          LifecycleHookName: notice.hookName,
          LifecycleActionToken: notice.token,
          InstanceId: notice.instanceId,
          LifecycleActionResult: 'CONTINUE',
        }),
      );
      return 'completed';
    } catch (error) {
      // A redelivered message whose action was completed (or timed out) before: nothing left to do.
      if (error instanceof AutoScalingServiceException && /No active Lifecycle Action found/i.test(error.message)) {
        return 'already-completed';
      }
      throw error;
    }
  }

  async heartbeat(notice: TerminationNotice): Promise<void> {
    await this.autoScaling.send(
      new RecordLifecycleActionHeartbeatCommand({
        AutoScalingGroupName: notice.groupName,
        LifecycleHookName: notice.hookName,
        LifecycleActionToken: notice.token,
        InstanceId: notice.instanceId,
      }),
    );
  }
}
