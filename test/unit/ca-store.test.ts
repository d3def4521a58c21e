import { GetSecretValueCommand, PutSecretValueCommand, ResourceExistsException, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { INITIAL_CA_TOKEN, SecretsManagerCaStore } from '../../core/aws/ca-store.js';
import { ConfigError } from '../../core/errors.js';
import { createCertificateAuthority, type CertifiedKey } from '../../core/pki/x509.js';

const secrets = mockClient(SecretsManagerClient);
let stored: { version: 1; peer: CertifiedKey; client: CertifiedKey };

beforeAll(async () => {
  const window = { notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000) };
  stored = { version: 1, peer: await createCertificateAuthority({ name: 'p', ...window }), client: await createCertificateAuthority({ name: 'c', ...window }) };
});
beforeEach(() => secrets.reset());

const store = () => new SecretsManagerCaStore(new SecretsManagerClient({ region: 'us-east-1' }), 'ca-secret', 'etcd');

describe('SecretsManagerCaStore', () => {
  it('reads existing CAs once per container and makes none', async () => {
    secrets.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify(stored) });
    const s = store();
    expect(await s.authorities()).toEqual({ peer: stored.peer, client: stored.client });
    await s.authorities();
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(1);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
  });

  it('makes both CAs on the first call, written once under the fixed token, and uses what the secret then holds', async () => {
    secrets.on(GetSecretValueCommand).resolvesOnce({ SecretString: '{}' }).resolves({ SecretString: JSON.stringify(stored) });
    secrets.on(PutSecretValueCommand).resolves({});
    const cas = await store().authorities();
    const put = secrets.commandCalls(PutSecretValueCommand)[0]?.args[0].input;
    expect(put).toMatchObject({ SecretId: 'ca-secret', ClientRequestToken: INITIAL_CA_TOKEN });
    expect(Object.keys(JSON.parse(put?.SecretString ?? '{}') as object).sort()).toEqual(['client', 'peer', 'version']);
    // What the secret holds wins, also over what this call made.
    expect(cas.peer).toEqual(stored.peer);
  });

  it("uses the winner's CAs when another first call wrote them first", async () => {
    secrets.on(GetSecretValueCommand).resolvesOnce({ SecretString: '{}' }).resolves({ SecretString: JSON.stringify(stored) });
    secrets.on(PutSecretValueCommand).rejects(new ResourceExistsException({ message: 'token in use', $metadata: {} }));
    expect((await store().authorities()).client).toEqual(stored.client);
  });

  it('asks for a retry when the secret still reads {} right after the write, and retries on the next call', async () => {
    secrets.on(GetSecretValueCommand).resolvesOnce({ SecretString: '{}' }).resolvesOnce({ SecretString: '{}' }).resolves({ SecretString: JSON.stringify(stored) });
    secrets.on(PutSecretValueCommand).rejects(new ResourceExistsException({ message: 'token in use', $metadata: {} }));
    const s = store();
    await expect(s.authorities()).rejects.toMatchObject({ retryable: true });
    expect((await s.authorities()).peer).toEqual(stored.peer);
  });

  it.each([
    ['not JSON', 'hello', 'does not hold JSON'],
    ['something else', JSON.stringify({ version: 1, peer: { certPem: 'x' } }), 'holds neither'],
  ])('refuses a secret holding %s, saying how to mend it, and writes nothing', async (_why, value, says) => {
    secrets.on(GetSecretValueCommand).resolves({ SecretString: value });
    const error = await store().authorities().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(says);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
  });
});
