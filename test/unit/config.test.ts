import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';

describe('loadConfig', () => {
  it('reads a function config with defaults, frozen', () => {
    const config = loadConfig({ ETCD_ASG_NAME: 'etcd-prod' }, 'function');
    expect(config).toEqual({
      asgName: 'etcd-prod',
      endpoints: undefined,
      clientPort: 2379,
      peerPort: 2380,
      metricsPort: 2381,
      dialTimeoutMs: 2000,
      callTimeoutMs: 5000,
      orphanGraceMs: 600_000,
      backupFunction: undefined,
      lifecycleMaxReceives: 5,
      agentStartGraceMs: 900_000,
      cutOffGraceMs: 300_000,
      registrationFreshMs: 30_000,
      quotaBytes: 2 * 1024 ** 3,
      maintenance: { minFreeRatio: 0.5, minFreeBytes: 64 * 1024 ** 2, recoverBelowRatio: 0.8, defragTimeoutMs: 60_000 },
      backup: undefined,
      tlsMode: 'off',
      scheme: 'http',
      tlsIssuer: undefined,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('with ETCD_AWS_TLS=on uses https and the issuer; refuses it without an issuer, and plaintext endpoints', () => {
    expect(loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'on', ETCD_AWS_ISSUER_FUNCTION: 'etcd-issuer' }, 'function')).toMatchObject({ scheme: 'https', tlsIssuer: 'etcd-issuer' });
    expect(loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'off', ETCD_AWS_ISSUER_FUNCTION: 'etcd-issuer' }, 'function')).toMatchObject({ scheme: 'http', tlsIssuer: undefined });
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'on' }, 'function')).toThrow(/ETCD_AWS_ISSUER_FUNCTION is required with ETCD_AWS_TLS=on/);
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'yes' }, 'function')).toThrow(/ETCD_AWS_TLS="yes" is invalid.*"on", "migrating" or "off"/s);
    // migrating: certificates from the issuer, plaintext URLs; the issuer is required as with on.
    expect(loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'migrating', ETCD_AWS_ISSUER_FUNCTION: 'etcd-issuer' }, 'function')).toMatchObject({
      tlsMode: 'migrating',
      scheme: 'http',
      tlsIssuer: 'etcd-issuer',
    });
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'migrating' }, 'function')).toThrow(/ETCD_AWS_ISSUER_FUNCTION is required with ETCD_AWS_TLS=migrating/);
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'migrating', ETCD_AWS_ISSUER_FUNCTION: 'i', ETCD_ENDPOINTS: 'https://10.0.0.1:2379' }, 'function')).toThrow(
      /every endpoint must be http:\/\//,
    );
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_TLS: 'on', ETCD_AWS_ISSUER_FUNCTION: 'i', ETCD_ENDPOINTS: 'https://10.0.0.1:2379,http://10.0.0.2:2379' }, 'function')).toThrow(
      /ETCD_ENDPOINTS has http:\/\/10.0.0.2:2379, but with ETCD_AWS_TLS=on every endpoint must be https:\/\//,
    );
    const agent = loadConfig({ BACKUP_BUCKET: 'b', ETCD_AWS_TLS: 'on', ETCD_AWS_ISSUER_FUNCTION: 'i', ETCD_AWS_SERVER_DNS_NAMES: 'Etcd-NLB.elb.amazonaws.com' }, 'agent');
    expect(agent).toMatchObject({ scheme: 'https', tlsIssuer: 'i', pki: { issuerFunction: 'i', serverDnsNames: ['etcd-nlb.elb.amazonaws.com'] } });
  });

  it('refuses a defragmentation threshold that is not a share, naming the variable', () => {
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_DEFRAG_MIN_FREE_RATIO: '50' }, 'function')).toThrow(/ETCD_AWS_DEFRAG_MIN_FREE_RATIO.*share of its database file/s);
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_AWS_NOSPACE_RECOVER_BELOW: '0' }, 'function')).toThrow(/ETCD_AWS_NOSPACE_RECOVER_BELOW/);
  });

  it('reads the issuer config: a week of certificate lifetime, the load balancer names lower-cased', () => {
    const env = { ETCD_ASG_NAME: 'g', ETCD_AWS_CA_SECRET: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:ca', ETCD_AWS_NODE_ROLE: 'etcd-NodeRole-1', AWS_LAMBDA_FUNCTION_NAME: 'etcd-issuer', AWS_REGION: 'us-east-1' };
    expect(loadConfig(env, 'issuer')).toEqual({
      asgName: 'g',
      caSecret: env.ETCD_AWS_CA_SECRET,
      nodeRoleName: 'etcd-NodeRole-1',
      controlRoleNames: [],
      controlFunctionNames: [],
      serverDnsNames: [],
      certLifetimeMs: 168 * 3_600_000,
      functionName: 'etcd-issuer',
      region: 'us-east-1',
    });
    expect(loadConfig({ ...env, ETCD_AWS_SERVER_DNS_NAMES: 'ETCD-nlb.elb.amazonaws.com, ' }, 'issuer').serverDnsNames).toEqual(['etcd-nlb.elb.amazonaws.com']);
  });

  it.each([
    [{ ETCD_AWS_NODE_ROLE: 'arn:aws:iam::123456789012:role/etcd-NodeRole-1' }, 'ETCD_AWS_NODE_ROLE="arn:aws:iam::123456789012:role/etcd-NodeRole-1" is invalid'],
    [{ ETCD_AWS_CERT_LIFETIME_HOURS: '0' }, 'ETCD_AWS_CERT_LIFETIME_HOURS="0" is invalid'],
    [{ ETCD_AWS_SERVER_DNS_NAMES: 'https://etcd.example.com' }, 'must be DNS names'],
    [{ ETCD_AWS_CA_SECRET: '' }, 'ETCD_AWS_CA_SECRET is required'],
  ])('refuses the issuer %j, saying what is wrong', (bad, message) => {
    const env = { ETCD_ASG_NAME: 'g', ETCD_AWS_CA_SECRET: 'ca', ETCD_AWS_NODE_ROLE: 'r', AWS_LAMBDA_FUNCTION_NAME: 'f', AWS_REGION: 'us-east-1', ...bad };
    expect(() => loadConfig(env, 'issuer')).toThrow(message);
  });

  it('splits and validates explicit endpoints', () => {
    const config = loadConfig({ ETCD_ASG_NAME: 'g', ETCD_ENDPOINTS: 'http://10.0.1.5:2379, http://10.0.2.5:2379,' }, 'function');
    expect(config.endpoints).toEqual(['http://10.0.1.5:2379', 'http://10.0.2.5:2379']);
  });

  it.each([
    [{}, 'ETCD_ASG_NAME is required (the Auto Scaling group of the etcd nodes)'],
    [{ ETCD_ASG_NAME: '' }, 'ETCD_ASG_NAME is required'],
    [{ ETCD_ASG_NAME: 'g', ETCD_CLIENT_PORT: '70000' }, 'ETCD_CLIENT_PORT="70000" is invalid (the port etcd serves clients on)'],
    [{ ETCD_ASG_NAME: 'g', ETCD_ENDPOINTS: '10.0.1.5:2379' }, 'ETCD_ENDPOINTS="10.0.1.5:2379" is invalid'],
  ])('rejects %j naming the variable and its purpose', (env, message) => {
    expect(() => loadConfig(env, 'function')).toThrow(ConfigError);
    expect(() => loadConfig(env, 'function')).toThrow(message);
  });

  it('names every bad variable at once', () => {
    const attempt = () => loadConfig({ ETCD_PEER_PORT: 'x', ETCD_AWS_CALL_TIMEOUT_MS: '1' }, 'function');
    expect(attempt).toThrow('ETCD_ASG_NAME is required');
    expect(attempt).toThrow('ETCD_PEER_PORT="x" is invalid');
    expect(attempt).toThrow('ETCD_AWS_CALL_TIMEOUT_MS="1" is invalid');
  });

  it('requires a bucket for the backup function and reads retention in hours and days', () => {
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g' }, 'backup')).toThrow('BACKUP_BUCKET is required (the S3 bucket of the backups and of the bootstrap lease)');
    expect(loadConfig({ ETCD_ASG_NAME: 'g', BACKUP_BUCKET: 'b', BACKUP_KEEP_LAST: '3', BACKUP_KEEP_DAILY_DAYS: '2' }, 'backup').backup).toEqual({
      bucket: 'b',
      prefix: '',
      kmsKeyId: undefined,
      retention: { keepLast: 3, hourlyForMs: 24 * 3_600_000, dailyForMs: 2 * 86_400_000, orphanAfterMs: 86_400_000 },
      snapshotTimeoutMs: 600_000,
    });
  });

  it('gives the agent an optional group override and a default data dir', () => {
    expect(loadConfig({ BACKUP_BUCKET: 'b' }, 'agent')).toMatchObject({
      asgName: undefined,
      dataDir: '/var/lib/etcd',
      binDir: undefined,
      bucket: 'b',
      prefix: '',
      timing: { leaseMs: 30_000, pollMs: 2000, freshMs: 30_000 },
    });
    expect(() => loadConfig({}, 'agent')).toThrow('BACKUP_BUCKET is required (the S3 bucket of the backups and of the bootstrap lease)');
    expect(loadConfig({ BACKUP_BUCKET: 'b', ETCD_ASG_NAME: 'g', ETCD_DATA_DIR: '/data/etcd' }, 'agent')).toMatchObject({
      asgName: 'g',
      dataDir: '/data/etcd',
    });
  });

  it("gives the agent etcd's default quota and one hour of periodic compaction, and reconcile the same quota", () => {
    expect(loadConfig({ BACKUP_BUCKET: 'b' }, 'agent').space).toEqual({ quotaBytes: 2 * 1024 ** 3, compaction: { mode: 'periodic', retention: '1h' } });
    const env = { BACKUP_BUCKET: 'b', ETCD_ASG_NAME: 'g', ETCD_QUOTA_BACKEND_BYTES: '4294967296' };
    expect(loadConfig(env, 'agent').space.quotaBytes).toBe(4 * 1024 ** 3);
    expect(loadConfig(env, 'function').quotaBytes).toBe(4 * 1024 ** 3);
  });

  it.each([
    ['periodic', '30m'],
    ['periodic', '1h30m'],
    ['periodic', '24h'],
    ['periodic', '2'],
    ['periodic', '0'],
    ['revision', '10000'],
    ['revision', '0'],
  ])('accepts auto-compaction %s %s as etcd reads it', (mode, retention) => {
    expect(loadConfig({ BACKUP_BUCKET: 'b', ETCD_AUTO_COMPACTION_MODE: mode, ETCD_AUTO_COMPACTION_RETENTION: ` ${retention}` }, 'agent').space.compaction).toEqual({ mode, retention });
  });

  it.each([
    [{ ETCD_AUTO_COMPACTION_MODE: 'hourly' }, 'ETCD_AUTO_COMPACTION_MODE="hourly" is invalid', 'must be "periodic" or "revision"'],
    [{ ETCD_AUTO_COMPACTION_RETENTION: '30s' }, 'ETCD_AUTO_COMPACTION_RETENTION="30s" is invalid (how much history etcd keeps', 'such as 1h, 30m or 1h30m'],
    [{ ETCD_AUTO_COMPACTION_RETENTION: '-1' }, 'ETCD_AUTO_COMPACTION_RETENTION="-1" is invalid', 'must be a whole number'],
    [{ ETCD_AUTO_COMPACTION_RETENTION: '1d' }, 'ETCD_AUTO_COMPACTION_RETENTION="1d" is invalid', 'such as 1h, 30m or 1h30m'],
    // etcd would read "1h" in revision mode as 3.6e12 revisions: never compacting.
    [{ ETCD_AUTO_COMPACTION_MODE: 'revision', ETCD_AUTO_COMPACTION_RETENTION: '1h' }, 'ETCD_AUTO_COMPACTION_RETENTION="1h" is invalid', 'must be a number of revisions, e.g. 10000'],
    [{ ETCD_AUTO_COMPACTION_MODE: 'revision' }, 'ETCD_AUTO_COMPACTION_RETENTION is required', 'must be a number of revisions, e.g. 10000'],
    [{ ETCD_QUOTA_BACKEND_BYTES: '2GiB' }, 'ETCD_QUOTA_BACKEND_BYTES="2GiB" is invalid (etcd\'s space quota in bytes', 'e.g. 4294967296 for 4 GiB'],
    [{ ETCD_QUOTA_BACKEND_BYTES: '0' }, 'ETCD_QUOTA_BACKEND_BYTES="0" is invalid', "write 2147483648 for etcd's default 2 GiB"],
    [{ ETCD_QUOTA_BACKEND_BYTES: '17179869184' }, 'ETCD_QUOTA_BACKEND_BYTES="17179869184" is invalid', "at most 8589934592 (8 GiB, etcd's suggested maximum)"],
  ])('refuses the agent %j, naming the variable and what to write instead', (env, names, advice) => {
    const attempt = () => loadConfig({ BACKUP_BUCKET: 'b', ...env }, 'agent');
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(names);
    expect(attempt).toThrow(advice);
  });

  it('refuses reconcile a quota over 8 GiB too: its DbQuotaPercent is of the quota etcd enforces', () => {
    expect(() => loadConfig({ ETCD_ASG_NAME: 'g', ETCD_QUOTA_BACKEND_BYTES: '17179869184' }, 'function')).toThrow('ETCD_QUOTA_BACKEND_BYTES="17179869184" is invalid');
  });

  it('gives the agent a quorum-loss grace period of a minute by default, and refuses one too short to outlast an election', () => {
    expect(loadConfig({ BACKUP_BUCKET: 'b' }, 'agent').quorumLossGraceMs).toBe(60_000);
    expect(loadConfig({ BACKUP_BUCKET: 'b' }, 'agent').quorumRecovery).toBe(true);
    expect(loadConfig({ BACKUP_BUCKET: 'b', ETCD_AWS_QUORUM_RECOVERY: 'off' }, 'agent').quorumRecovery).toBe(false);
    expect(() => loadConfig({ BACKUP_BUCKET: 'b', ETCD_AWS_QUORUM_RECOVERY: 'yes' }, 'agent')).toThrow('ETCD_AWS_QUORUM_RECOVERY');
    expect(loadConfig({ BACKUP_BUCKET: 'b', ETCD_AWS_QUORUM_LOSS_GRACE_MS: '1500' }, 'agent').quorumLossGraceMs).toBe(1500);
    expect(() => loadConfig({ BACKUP_BUCKET: 'b', ETCD_AWS_QUORUM_LOSS_GRACE_MS: '10' }, 'agent')).toThrow(
      'ETCD_AWS_QUORUM_LOSS_GRACE_MS="10" is invalid (how long the local etcd must have had no quorum before the agent considers forcing a new cluster)',
    );
  });
});
