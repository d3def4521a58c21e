import { describe, expect, it } from 'vitest';
import { compareMembership } from '../../core/domain/membership.js';
import { clientUrlsOfScheme, faultTolerance, hexMemberId, memberOfInstance, membersWithoutTls, quorumOf } from '../../core/domain/members.js';
import { activePeers, clientUrls } from '../../core/domain/instances.js';
import { groupInstance as instance, member } from '../support/fixtures.js';


describe('quorum arithmetic', () => {
  it.each([
    [1, 1, 0],
    [2, 2, 0],
    [3, 2, 1],
    [4, 3, 1],
    [5, 3, 2],
    [7, 4, 3],
  ])('%i voting members need %i votes and tolerate %i failures', (n, quorum, tolerance) => {
    expect(quorumOf(n)).toBe(quorum);
    expect(faultTolerance(n)).toBe(tolerance);
  });
});

describe('hexMemberId', () => {
  it('keeps every bit of a uint64 ID above 2^53, as etcdctl prints it', () => {
    expect(hexMemberId('10276657743932975437')).toBe('8e9e05c52164694d');
  });
});

describe('memberOfInstance', () => {
  const members = [member('1', 'i-aaa', '127.9.1.4'), member('2', '', '127.9.1.5'), member('3', 'i-ccc', '127.9.1.6')];
  it.each([
    ['named after the instance', 'i-aaa', '127.9.1.99', '1', 'name'],
    ['added but never started: matched by peer IP', 'i-bbb', '127.9.1.5', '2', 'peer-ip'],
    ['name wins over a stale IP match', 'i-ccc', '127.9.1.4', '3', 'name'],
  ])('%s', (_why, instanceId, ip, memberId, matchedBy) => {
    expect(memberOfInstance(members, { instanceId, privateIp: ip })).toEqual({
      member: members.find((m) => m.id === memberId),
      matchedBy,
    });
  });
  it('finds nothing for an instance that is not a member', () => {
    expect(memberOfInstance(members, { instanceId: 'i-zzz', privateIp: '127.9.1.50' })).toBeUndefined();
    expect(memberOfInstance(members, { instanceId: 'i-zzz', privateIp: undefined })).toBeUndefined();
  });
});

describe('activePeers', () => {
  it.each([
    ['Pending', true],
    ['Pending:Wait', true],
    ['InService', true],
    ['Terminating', false],
    ['Terminating:Wait', false],
    ['Terminating:Proceed', false],
    ['Detaching', false],
    ['Standby', false],
  ])('%s counts as a peer: %s', (state, expected) => {
    expect(activePeers([instance('i-1', '127.9.1.4', state)]).length === 1).toBe(expected);
  });
  it('skips instances without an address and sorts client URLs', () => {
    const peers = activePeers([instance('i-2', '127.9.1.7'), instance('i-1', undefined), instance('i-3', '127.9.1.5')]);
    expect(clientUrls(peers, 2379)).toEqual(['http://127.9.1.5:2379', 'http://127.9.1.7:2379']);
    expect(clientUrls(peers, 2379, 'https')).toEqual(['https://127.9.1.5:2379', 'https://127.9.1.7:2379']);
  });
});

describe('compareMembership', () => {
  it('pairs members with instances and names orphans and instances without a member', () => {
    const members = [member('1', 'i-a', '127.9.1.4'), member('2', 'i-gone', '127.9.1.9'), member('3', '', '127.9.1.6', true)];
    const instances = [instance('i-a', '127.9.1.4'), instance('i-c', '127.9.1.6'), instance('i-new', '127.9.1.7', 'Pending'), instance('i-gone', '127.9.1.9', 'Terminating:Wait')];
    expect(compareMembership(members, instances)).toEqual({
      matched: [
        { instanceId: 'i-a', memberId: '1', matchedBy: 'name' },
        { instanceId: 'i-c', memberId: '3', matchedBy: 'peer-ip' },
      ],
      orphans: [members[1]],
      withoutMember: ['i-new'],
      voting: 2,
      learners: 1,
    });
  });
});

describe('clientUrlsOfScheme', () => {
  it.each([
    { advertised: ['https://10.0.1.1:2379'], scheme: 'https', expected: ['https://10.0.1.1:2379'] },
    { advertised: ['http://10.0.1.1:2379', 'https://10.0.1.1:2379'], scheme: 'https', expected: ['https://10.0.1.1:2379'] },
    { advertised: ['http://10.0.1.1:2379', 'https://10.0.1.1:2379'], scheme: 'http', expected: ['http://10.0.1.1:2379'] },
    // A member that does not serve the caller's scheme: its address with it (it refuses: an answer, not silence).
    { advertised: ['http://10.0.1.1:2379'], scheme: 'https', expected: ['https://10.0.1.1:2379'] },
    { advertised: ['https://10.0.1.1:2379'], scheme: 'http', expected: ['http://10.0.1.1:2379'] },
    { advertised: [], scheme: 'https', expected: [] },
  ] as const)('$advertised for $scheme → $expected', ({ advertised, scheme, expected }) => {
    expect(clientUrlsOfScheme(advertised, scheme)).toEqual(expected);
  });
});

describe('membersWithoutTls', () => {
  const m = (name: string, peerUrls: string[]) => ({ id: name, name, peerUrls, clientUrls: [], isLearner: false });
  it('names every member with a plaintext peer URL (launched with tls off or migrating), none of those with TLS', () => {
    const members = [m('on', ['https://10.0.1.1:2380']), m('migrating', ['http://10.0.1.2:2380']), m('mixed', ['https://10.0.1.3:2380', 'http://10.0.1.3:2380']), m('none', [])];
    expect(membersWithoutTls(members).map((x) => x.name)).toEqual(['migrating', 'mixed', 'none']);
    expect(membersWithoutTls([m('on', ['https://10.0.1.1:2380'])])).toEqual([]);
  });
});
