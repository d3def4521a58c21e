import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  AutoScalingClient,
  AutoScalingServiceException,
  CompleteLifecycleActionCommand,
  RecordLifecycleActionHeartbeatCommand,
} from '@aws-sdk/client-auto-scaling';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { AwsLifecycleActions } from '../../core/aws/lifecycle-actions.js';
import { classifyLifecycleMessage, parseLifecycleBody, type TerminationNotice } from '../../core/domain/lifecycle-events.js';
import type { Member } from '../../core/domain/members.js';
import { planTermination } from '../../core/domain/termination.js';
import { REPO_ROOT } from '../../testbed/tools.js';

const fixture = (name: string) => readFileSync(path.join(REPO_ROOT, 'test', 'events', name), 'utf8');

describe('lifecycle message shapes', () => {
  const termination = (token: string, time: string) => ({
    kind: 'termination',
    notice: { groupName: 'etcd-prod', hookName: 'etcd-terminate', instanceId: 'i-0123456789abcdef0', token, time },
  });

  it.each([
    ['the hook JSON in an SQS body', parseLifecycleBody(fixture('sqs/hook-terminating.json')), termination('71514b9d-6a40-4b26-8523-05e7eEXAMPLE', '2026-11-26T12:00:00.000Z')],
    ['an EventBridge event delivered through SQS', parseLifecycleBody(fixture('eventbridge/terminate-lifecycle-action.json')), termination('87654321-4321-4321-4321-210987654321', '2026-11-26T12:00:01Z')],
    ['an EventBridge event invoking directly', classifyLifecycleMessage(JSON.parse(fixture('eventbridge/terminate-lifecycle-action.json'))), termination('87654321-4321-4321-4321-210987654321', '2026-11-26T12:00:01Z')],
    ['the test notification', parseLifecycleBody(fixture('sqs/test-notification.json')), { kind: 'test-notification', groupName: 'etcd-prod' }],
    ['a launching hook', parseLifecycleBody(fixture('sqs/launching-hook.json')), { kind: 'other-transition', transition: 'autoscaling:EC2_INSTANCE_LAUNCHING', groupName: 'etcd-prod' }],
  ])('understands %s', (_what, parsed, expected) => {
    expect(parsed).toEqual(expected);
  });

  it.each([
    ['not JSON', '{"oops'],
    ['JSON of another kind', '{"hello":"world"}'],
    ['a hook without a token', JSON.stringify({ ...JSON.parse(fixture('sqs/hook-terminating.json')), LifecycleActionToken: undefined })],
    ['an EventBridge event of another kind', JSON.stringify({ source: 'aws.autoscaling', 'detail-type': 'EC2 Instance Launch Successful', detail: { StatusCode: 'x' } })],
  ])('calls %s invalid, with a reason', (_what, body) => {
    const parsed = parseLifecycleBody(body);
    expect(parsed.kind).toBe('invalid');
    expect(parsed.kind === 'invalid' && parsed.reason.length > 10).toBe(true);
  });
});

describe('planTermination', () => {
  const notice: TerminationNotice = { groupName: 'g', hookName: 'h', instanceId: 'i-aaa', token: 't', time: undefined };
  const m = (id: string, name: string, ip: string, isLearner = false): Member => ({ id, name, peerUrls: [`http://${ip}:2380`], clientUrls: [], isLearner });
  it.each<[string, Member[], string | undefined, unknown]>([
    ['member named after the instance', [m('1', 'i-aaa', '10.0.0.1'), m('2', 'i-b', '10.0.0.2')], '10.0.0.1', { kind: 'remove', memberId: '1', memberName: 'i-aaa', matchedBy: 'name' }],
    ['a member added but never started, found by peer IP', [m('1', '', '10.0.0.1', true), m('2', 'i-b', '10.0.0.2')], '10.0.0.1', { kind: 'remove', memberId: '1', memberName: '', matchedBy: 'peer-ip' }],
    ['not a member', [m('2', 'i-b', '10.0.0.2')], '10.0.0.1', { kind: 'complete', reason: 'not-a-member' }],
    ['the last voting member, alone', [m('1', 'i-aaa', '10.0.0.1')], '10.0.0.1', { kind: 'keep-last-voter', memberId: '1', reason: 'last-voting-member' }],
    [
      'the last voting member while learners exist: they must vote before it goes, or nothing can ever promote them',
      [m('1', 'i-aaa', '10.0.0.1'), m('3', 'i-c', '10.0.0.3', true), m('4', '', '10.0.0.4', true)],
      '10.0.0.1',
      { kind: 'promote-first', memberId: '1', learnerIds: ['3'], reason: 'last-voter-with-learners' },
    ],
    [
      'the last voting member beside a learner that never started: it can never catch up, so it holds nothing',
      [m('1', 'i-aaa', '10.0.0.1'), m('4', '', '10.0.0.4', true)],
      '10.0.0.1',
      { kind: 'keep-last-voter', memberId: '1', reason: 'last-voting-member' },
    ],
    ['a learner while one voter remains', [m('1', 'i-aaa', '10.0.0.1', true), m('2', 'i-b', '10.0.0.2')], '10.0.0.1', { kind: 'remove', memberId: '1', memberName: 'i-aaa', matchedBy: 'name' }],
  ])('%s', (_why, members, ip, expected) => {
    expect(planTermination(notice, members, ip)).toEqual(expected);
  });
});

describe('AwsLifecycleActions', () => {
  const asg = mockClient(AutoScalingClient);
  const notice: TerminationNotice = { groupName: 'etcd-prod', hookName: 'etcd-terminate', instanceId: 'i-0123456789abcdef0', token: 'tok-1', time: undefined };
  const actions = () => new AwsLifecycleActions(new AutoScalingClient({ region: 'us-east-1' }));
  beforeEach(() => asg.reset());

  it('completes with CONTINUE, the token, the hook, the group and the instance', async () => {
    asg.on(CompleteLifecycleActionCommand).resolves({});
    await expect(actions().complete(notice)).resolves.toBe('completed');
    expect(asg.commandCalls(CompleteLifecycleActionCommand).map((c) => c.args[0].input)).toEqual([
      {
        AutoScalingGroupName: 'etcd-prod',
        LifecycleHookName: 'etcd-terminate',
        LifecycleActionToken: 'tok-1',
        InstanceId: 'i-0123456789abcdef0',
        LifecycleActionResult: 'CONTINUE',
      },
    ]);
  });

  it('treats "no active lifecycle action" as completed before', async () => {
    asg.on(CompleteLifecycleActionCommand).rejects(
      new AutoScalingServiceException({ name: 'ValidationError', $fault: 'client', $metadata: {}, message: 'No active Lifecycle Action found with token tok-1' }),
    );
    await expect(actions().complete(notice)).resolves.toBe('already-completed');
  });

  it('lets other errors through', async () => {
    asg.on(CompleteLifecycleActionCommand).rejects(new AutoScalingServiceException({ name: 'Throttling', $fault: 'client', $metadata: {}, message: 'Rate exceeded' }));
    await expect(actions().complete(notice)).rejects.toThrow('Rate exceeded');
  });

  it('records a heartbeat with the token, the hook, the group and the instance', async () => {
    asg.on(RecordLifecycleActionHeartbeatCommand).resolves({});
    await actions().heartbeat(notice);
    expect(asg.commandCalls(RecordLifecycleActionHeartbeatCommand).map((c) => c.args[0].input)).toEqual([
      { AutoScalingGroupName: 'etcd-prod', LifecycleHookName: 'etcd-terminate', LifecycleActionToken: 'tok-1', InstanceId: 'i-0123456789abcdef0' },
    ]);
  });
});
