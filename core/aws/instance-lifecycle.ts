import {
  AutoScalingClient,
  AutoScalingServiceException,
  CompleteLifecycleActionCommand,
  DescribeAutoScalingInstancesCommand,
  RecordLifecycleActionHeartbeatCommand,
  SetInstanceHealthCommand,
} from '@aws-sdk/client-auto-scaling';
import { CloudFormationClient, CloudFormationServiceException, SignalResourceCommand } from '@aws-sdk/client-cloudformation';
import type { InstanceLifecycle, StackSignals } from '../ports.js';

/** The instance's own lifecycle calls, by instance ID (no token needed: Auto Scaling accepts either). */
export class AwsInstanceLifecycle implements InstanceLifecycle {
  constructor(
    private readonly autoScaling: AutoScalingClient,
    private readonly groupName: string,
    private readonly launchHookName: string,
  ) {}

  async state(instanceId: string): Promise<string | undefined> {
    const out = await this.autoScaling.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] }));
    return out.AutoScalingInstances?.find((i) => i.InstanceId === instanceId)?.LifecycleState;
  }

  async completeLaunch(instanceId: string, result: 'CONTINUE' | 'ABANDON'): Promise<'completed' | 'no-action'> {
    try {
      await this.autoScaling.send(
        new CompleteLifecycleActionCommand({
          AutoScalingGroupName: this.groupName,
          LifecycleHookName: this.launchHookName,
          InstanceId: instanceId,
          LifecycleActionResult: result,
        }),
      );
      return 'completed';
    } catch (error) {
      if (error instanceof AutoScalingServiceException && /No active Lifecycle Action found/i.test(error.message)) return 'no-action';
      throw error;
    }
  }

  async heartbeatLaunch(instanceId: string): Promise<void> {
    await this.autoScaling.send(
      new RecordLifecycleActionHeartbeatCommand({ AutoScalingGroupName: this.groupName, LifecycleHookName: this.launchHookName, InstanceId: instanceId }),
    );
  }

  async setUnhealthy(instanceId: string): Promise<void> {
    await this.autoScaling.send(new SetInstanceHealthCommand({ InstanceId: instanceId, HealthStatus: 'Unhealthy', ShouldRespectGracePeriod: false }));
  }
}

/** SignalResource for the group's logical resource, with the instance ID as the unique ID (what cfn-signal sends). */
export class CloudFormationStackSignals implements StackSignals {
  constructor(
    private readonly cloudFormation: CloudFormationClient,
    private readonly stackName: string,
    private readonly logicalResourceId: string,
  ) {}

  async signal(instanceId: string, status: 'SUCCESS' | 'FAILURE'): Promise<'sent' | 'not-waiting'> {
    try {
      await this.cloudFormation.send(
        new SignalResourceCommand({ StackName: this.stackName, LogicalResourceId: this.logicalResourceId, UniqueId: instanceId, Status: status }),
      );
      return 'sent';
    } catch (error) {
      // Outside an update (a scale-out, a replacement) nothing waits: CloudFormation refuses the signal.
      if (error instanceof CloudFormationServiceException && /can not be signaled|cannot be signaled|is in .* state/i.test(error.message)) return 'not-waiting';
      throw error;
    }
  }
}

/** No stack to signal (the agent runs outside CloudFormation). */
export const NO_STACK_SIGNALS: StackSignals = { signal: () => Promise.resolve('not-waiting') };
