import { describe, expect, it } from 'vitest';
import { crashLoopVerdict, failedRun, healthAction, interruptedFirstStart, othersHoldQuorum, type EtcdRun, type HealthVerdict } from '../../core/domain/health.js';
import { planWithoutQuorum, refusedButAnswered } from '../../core/domain/termination.js';
import { ConfigError, EtcdUnavailableError } from '../../core/errors.js';
import { BootstrapRefusedError } from '../../core/use-cases/bootstrap.js';
import { IncompatibleBackupError, NoRestorableBackupError } from '../../core/use-cases/restore.js';
import { DataDirUnusableError } from '../../node-agent/data-dir.js';
import { EtcdMissingError } from '../../node-agent/etcd-process.js';
import { respondToFailure } from '../../node-agent/failures.js';

const policy = { failedRuns: 3, failFastMs: 60_000 };
const T = 1_000_000;
const crashed = (startedAt: number): EtcdRun => ({ startedAt, exitedAt: startedAt + 500, exit: 1 });
const served = (startedAt: number, ranMs: number, exit: number | string = 1): EtcdRun => ({ startedAt, servedAt: startedAt + 100, exitedAt: startedAt + ranMs, exit });

describe('failedRun', () => {
  it.each<[string, EtcdRun, boolean]>([
    ['exited non-zero without ever serving', crashed(T), true],
    ['served, then died within a minute', served(T, 30_000), true],
    ['served for an hour, then died', served(T, 3_600_000), false],
    ['exited 0 (removed from the cluster, it leaves cleanly)', { startedAt: T, exitedAt: T + 100, exit: 0 }, false],
    ['stopped by the agent (SIGTERM forwarded)', { startedAt: T, exitedAt: T + 100, exit: 143, stopped: true }, false],
    ['still running', { startedAt: T }, false],
  ])('%s', (_why, run, expected) => {
    expect(failedRun(run, policy)).toBe(expected);
  });
});

describe('crashLoopVerdict', () => {
  it('is unhealthy after the policy number of failed starts in a row, naming the exits', () => {
    const verdict = crashLoopVerdict([crashed(T), crashed(T + 10), served(T + 20, 1000, 'SIGKILL')], policy);
    expect(verdict).toMatchObject({ kind: 'unhealthy', reason: 'etcd-crash-loop' });
    expect(verdict.kind === 'unhealthy' ? verdict.detail : '').toContain('exits 1, 1, SIGKILL');
  });

  it.each<[string, EtcdRun[]]>([
    ['too few starts yet', [crashed(T), crashed(T + 10)]],
    ['a healthy run breaks the streak', [crashed(T), served(T + 5, 3_600_000), crashed(T + 10), crashed(T + 20)]],
    ['the latest start still runs', [crashed(T), crashed(T + 10), { startedAt: T + 20 }]],
    ['no history', []],
  ])('stays healthy: %s', (_why, runs) => {
    expect(crashLoopVerdict(runs, policy)).toEqual({ kind: 'healthy' });
  });
});

describe('healthAction', () => {
  const sick: HealthVerdict = { kind: 'unhealthy', reason: 'etcd-crash-loop', detail: 'x' };
  it.each<[string, HealthVerdict, string | undefined, string]>([
    ['healthy: nothing', { kind: 'healthy' }, 'InService', 'none'],
    ['launching: abandon the launch (a rollout stops)', sick, 'Pending:Wait', 'abandon-launch'],
    ['in service: mark unhealthy (the group replaces it)', sick, 'InService', 'set-unhealthy'],
    ['already terminating: nothing more to do', sick, 'Terminating:Wait', 'none'],
    ['in standby: the operator holds it', sick, 'Standby', 'none'],
    ['outside any group', sick, undefined, 'none'],
  ])('%s', (_why, verdict, state, kind) => {
    expect(healthAction(verdict, state).kind).toBe(kind);
  });
});

describe('respondToFailure: who can fix what ended the agent run', () => {
  it.each<[string, unknown, string, string?]>([
    ['a data dir etcd cannot write: a new instance (a new volume)', new DataDirUnusableError('not writable'), 'unhealthy', 'data-dir-unusable'],
    ['no etcd binary: a new instance installs it again', new EtcdMissingError('no etcd'), 'unhealthy', 'etcd-missing'],
    ['an unreadable WAL', new BootstrapRefusedError('bad wal', 'unreadable-local-data'), 'unhealthy', 'local-data-unreadable'],
    ['a crash loop', new BootstrapRefusedError('crashing', 'etcd-crash-loop'), 'unhealthy', 'etcd-crash-loop'],
    ['a release that may not join: the template is wrong, not the instance', new BootstrapRefusedError('skip', 'version-incompatible'), 'abandon-launch'],
    ['a backup of newer data', new IncompatibleBackupError('3.7 data'), 'abandon-launch'],
    ['a bad setting', new ConfigError('ETCD_AWS_POLL_MS is invalid'), 'abandon-launch'],
    ['no backup restores: retried (a fix in S3 may come)', new NoRestorableBackupError('all corrupt'), 'retry'],
    ['etcd unreachable: retried', new EtcdUnavailableError('down'), 'retry'],
    ['anything else: retried', new Error('boom'), 'retry'],
  ])('%s', (_why, error, kind, reason) => {
    const response = respondToFailure(error);
    expect(response.kind).toBe(kind);
    if (reason) expect(response).toMatchObject({ verdict: { reason } });
  });
});

describe('othersHoldQuorum: may this member be replaced without the cluster losing quorum', () => {
  const self = { instanceId: 'i-self', privateIp: '10.0.0.1' };
  const v = (id: string, name: string, ip: string, isLearner = false) => ({ id, name, peerUrls: [`http://${ip}:2380`], clientUrls: [`http://${ip}:2379`], isLearner });
  const mine = v('1', 'i-self', '10.0.0.1');
  const b = v('2', 'i-b', '10.0.0.2');
  const c = v('3', 'i-c', '10.0.0.3');
  const live = (members: ReturnType<typeof v>[], healthy: string[]) => ({ kind: 'live' as const, clusterId: 'C', members, healthyMemberIds: healthy, memberVersions: {} });
  it.each<[string, ReturnType<typeof live>, boolean]>([
    ['both others healthy: 2 of 3 voters without it', live([mine, b, c], ['2', '3']), true],
    ['one other down: 1 of 3 is no quorum', live([mine, b, c], ['1', '2']), false],
    ['this instance is a learner: the voters decide alone', live([{ ...mine, isLearner: true }, b, c], ['2', '3']), true],
    ['a cluster of one: nothing holds it without this member', live([mine], ['1']), false],
  ])('%s', (_why, probe, expected) => {
    expect(othersHoldQuorum(probe, self)).toBe(expected);
  });
});

describe('refusedButAnswered: a failed call that still shows etcd runs there', () => {
  it.each<[string, boolean]>([
    ['14 UNAVAILABLE: No connection established. Last error: Error: certificate has expired', true],
    ['14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate', true],
    ['14 UNAVAILABLE: No connection established. Last error: Error: write EPROTO ... SSL routines:ssl3_get_record:wrong version number', true],
    ['16 UNAUTHENTICATED: etcdserver: user name not found', true],
    ['7 PERMISSION_DENIED: etcdserver: permission denied', true],
    ['14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 10.0.0.1:2379', false],
    ['4 DEADLINE_EXCEEDED: Deadline exceeded', false],
    ['connection refused', false],
  ])('%s', (detail, answered) => {
    expect(refusedButAnswered(detail)).toBe(answered);
  });
});

describe('planWithoutQuorum: a termination while no member answers with quorum', () => {
  it('holds an instance whose etcd still answers (its data may be needed), lets a silent one go at once', () => {
    expect(planWithoutQuorum('answers')).toEqual({ kind: 'hold', reason: 'member-answers-without-quorum' });
    expect(planWithoutQuorum('silent')).toEqual({ kind: 'complete', reason: 'silent-without-quorum' });
  });
});

describe('interruptedFirstStart', () => {
  const noWal = { kind: 'unreadable', reason: 'member has no WAL', noWal: true } as const;
  const ioError = { kind: 'unreadable', reason: 'cannot list wal: EIO' } as const;
  const first = { startedAt: 1, exitedAt: 2, exit: 1, fromScratch: true } as const;
  it.each<[string, { kind: string; noWal?: true }, EtcdRun[], boolean]>([
    ['a join that failed before its WAL', noWal, [first], true],
    ['a start that served once (its data may matter)', noWal, [{ ...first, servedAt: 2 }], false],
    ['a start on data it had (a restart, a restore)', noWal, [{ ...first, fromScratch: undefined }], false],
    ['no run recorded (someone else left the dir)', noWal, [], false],
    ['an unreadable WAL dir (an I/O error)', ioError, [first], false],
    ['no data at all', { kind: 'none' }, [first], false],
  ])('%s → %s', (_name, local, runs, expected) => {
    expect(interruptedFirstStart(local, runs)).toBe(expected);
  });
});
