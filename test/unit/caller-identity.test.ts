import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIENCE_HEADER, CSR_DIGEST_HEADER, IdentityRefusedError, signedIdentityRequestSchema, signIdentityRequest, verifyIdentityRequest, type SignedIdentityRequest } from '../../core/aws/caller-identity.js';
import { InvalidEventError } from '../../core/errors.js';

// A stand-in STS on loopback: it answers as the test says, and records what it was sent.
let server: Server;
let endpoint: URL;
let answer: { status: number; body: string } = { status: 200, body: '' };
const received: Array<{ headers: Record<string, unknown>; body: string }> = [];
const ARN = 'arn:aws:sts::123456789012:assumed-role/NodeRole/i-0123456789abcdef0';
const ok = `<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>${ARN}</Arn><UserId>AROA:i-0123456789abcdef0</UserId><Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(answer.status, { 'content-type': 'text/xml' }).end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const credentials = { accessKeyId: 'ASIAEXAMPLE', secretAccessKey: 'secret', sessionToken: 'token' };
const sign = () => signIdentityRequest({ credentials, region: 'us-east-1', endpoint, csrSha256: 'ab'.repeat(32), audience: 'etcd-issuer' });
const withHeaders = (signed: SignedIdentityRequest, headers: Record<string, string>): SignedIdentityRequest => ({ ...signed, headers: { ...signed.headers, ...headers } });

describe('verifyIdentityRequest', () => {
  it("passes a signed request on to STS as it is, and returns STS's caller with the signed digest and issuer", async () => {
    answer = { status: 200, body: ok };
    const signed = await sign();
    received.length = 0;
    expect(await verifyIdentityRequest(signed, endpoint, 'us-east-1')).toEqual({ arn: ARN, signedCsrSha256: 'ab'.repeat(32), signedAudience: 'etcd-issuer' });
    expect(received).toHaveLength(1);
    expect(received[0]?.body).toBe('Action=GetCallerIdentity&Version=2011-06-15');
    expect(received[0]?.headers).toMatchObject({ authorization: signed.headers.authorization, [CSR_DIGEST_HEADER]: 'ab'.repeat(32), [AUDIENCE_HEADER]: 'etcd-issuer', 'x-amz-security-token': 'token' });
  });

  it.each<[string, (s: SignedIdentityRequest) => SignedIdentityRequest, string]>([
    ['another body (another action)', (s) => ({ ...s, body: 'Action=AssumeRole&Version=2011-06-15' }), 'body must be exactly'],
    ['a header the issuer does not pass on', (s) => withHeaders(s, { 'x-forwarded-host': 'sts.example' }), 'x-forwarded-host'],
    ['another host', (s) => withHeaders(s, { host: 'sts.us-west-2.amazonaws.com' }), 'signed for host sts.us-west-2.amazonaws.com'],
    [
      'a second SignedHeaders naming unsigned headers',
      (s) => withHeaders(s, { authorization: (s.headers.authorization as string).replace('AWS4-HMAC-SHA256 ', `AWS4-HMAC-SHA256 SignedHeaders=host;${CSR_DIGEST_HEADER};${AUDIENCE_HEADER}, `) }),
      'of the one accepted form',
    ],
    [
      'a signature that does not cover the CSR digest',
      (s) => withHeaders(s, { authorization: (s.headers.authorization as string).replace(`;${CSR_DIGEST_HEADER}`, '') }),
      `does not cover ${CSR_DIGEST_HEADER}`,
    ],
    ...(['x-amz-date', AUDIENCE_HEADER] as const).map((h): [string, (s: SignedIdentityRequest) => SignedIdentityRequest, string] => [
      `a signature that does not cover ${h}`,
      (s) => withHeaders(s, { authorization: (s.headers.authorization as string).replace(`${h};`, '').replace(`;${h}`, '') }),
      `does not cover ${h}`,
    ]),
    [
      'a signature that does not cover the host',
      (s) => withHeaders(s, { authorization: (s.headers.authorization as string).replace('SignedHeaders=content-type;host;', 'SignedHeaders=content-type;') }),
      'does not cover host',
    ],
    ['no signature at all', (s) => withHeaders(s, { authorization: 'Bearer x' }), 'of the one accepted form'],
    ['a signature for another region', (s) => withHeaders(s, { authorization: (s.headers.authorization as string).replace('/us-east-1/', '/eu-west-1/') }), 'signed for region eu-west-1'],
  ])('refuses %s before sending anything', async (_why, change, says) => {
    const signed = change(await sign());
    received.length = 0;
    const error = await verifyIdentityRequest(signed, endpoint, 'us-east-1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidEventError);
    expect((error as Error).message).toContain(says);
    expect(received).toHaveLength(0);
  });

  it("reports STS's refusal as an IdentityRefusedError with STS's code, not as something to retry", async () => {
    answer = { status: 403, body: '<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></ErrorResponse>' };
    const error = await verifyIdentityRequest(await sign(), endpoint, 'us-east-1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdentityRefusedError);
    expect(error).toMatchObject({ retryable: false, message: expect.stringContaining('SignatureDoesNotMatch (The request signature we calculated does not match)') as unknown });
  });

  it.each([
    ['STS failing', { status: 503, body: '' }],
    ['STS throttling', { status: 429, body: '' }],
  ])('lets the caller retry %s', async (_why, reply) => {
    answer = reply;
    await expect(verifyIdentityRequest(await sign(), endpoint, 'us-east-1')).rejects.toMatchObject({ retryable: true });
  });

  it('lets the caller retry when STS cannot be reached', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const gone = new URL(`http://127.0.0.1:${(closed.address() as AddressInfo).port}/`);
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const signed = await signIdentityRequest({ credentials, region: 'us-east-1', endpoint: gone, csrSha256: 'ab'.repeat(32), audience: 'etcd-issuer' });
    await expect(verifyIdentityRequest(signed, gone, 'us-east-1')).rejects.toMatchObject({ retryable: true, message: expect.stringContaining('could not reach STS') as unknown });
  });

  it('refuses an STS answer that does not name exactly one caller', async () => {
    answer = { status: 200, body: `${ok}${ok}` };
    await expect(verifyIdentityRequest(await sign(), endpoint, 'us-east-1')).rejects.toThrow(IdentityRefusedError);
  });
});

describe('signedIdentityRequestSchema', () => {
  it.each([
    ['a line break in a header value', { 'x-amz-date': '20261128T000000Z\r\nx-evil: 1' }],
    ['a non-ASCII header value', { host: 'stś.amazonaws.com' }],
    ['a header name with a space', { 'x evil': 'a' }],
  ])('refuses %s (it could not be sent as a header)', (_why, headers) => {
    expect(signedIdentityRequestSchema.safeParse({ headers, body: 'Action=GetCallerIdentity&Version=2011-06-15' }).success).toBe(false);
  });
});
