import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/** The query-protocol answers of Auto Scaling and CloudFormation, as the AWS SDK parses them. */
export const AUTOSCALING_NS = 'http://autoscaling.amazonaws.com/doc/2011-01-01/';
export const CLOUDFORMATION_NS = 'http://cloudformation.amazonaws.com/doc/2010-05-15/';

export function sendResult(res: ServerResponse, action: string, inner = '', ns = AUTOSCALING_NS): void {
  res
    .writeHead(200, { 'content-type': 'text/xml' })
    .end(`<${action}Response xmlns="${ns}"><${action}Result>${inner}</${action}Result><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`);
}

export function sendValidationError(res: ServerResponse, message: string, ns = AUTOSCALING_NS): void {
  res
    .writeHead(400, { 'content-type': 'text/xml' })
    .end(
      `<ErrorResponse xmlns="${ns}"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>${message}</Message></Error>` +
        `<RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
    );
}

/** Rewrites one field of one instance in a DescribeAutoScalingGroups/Instances answer. */
export function rewriteInstanceField(xml: string, instanceId: string, field: 'LifecycleState' | 'HealthStatus', value: string): string {
  return xml.replace(new RegExp(`(<InstanceId>${instanceId}</InstanceId>[\\s\\S]*?<${field}>)[^<]*(</${field}>)`, 'g'), `$1${value}$2`);
}

/** Instance IDs in a Describe answer. */
export function instanceIdsIn(xml: string): string[] {
  return [...new Set([...xml.matchAll(/<InstanceId>(i-[0-9a-f]+)<\/InstanceId>/g)].map((m) => m[1] as string))];
}

/** A lifecycle hook's action is found by its token, or by instance ID and hook name (the agent's way). */
export interface ActionParams {
  readonly AutoScalingGroupName?: string;
  readonly LifecycleHookName?: string;
  readonly LifecycleActionToken?: string;
  readonly InstanceId?: string;
  readonly LifecycleActionResult?: string;
}
