import * as z from 'zod';
import type { EtcdSpace } from './domain/bootstrap.js';
import { ConfigError } from './errors.js';

/**
 * Every setting the project reads, by environment variable, with what it is for. The descriptions are
 * used in error messages and mirror the README's configuration table.
 */
const SETTINGS = {
  ETCD_ASG_NAME: 'the Auto Scaling group of the etcd nodes',
  ETCD_ENDPOINTS: 'comma-separated etcd client URLs, e.g. http://10.0.1.5:2379,http://10.0.2.5:2379',
  ETCD_CLIENT_PORT: 'the port etcd serves clients on',
  ETCD_PEER_PORT: 'the port etcd members talk to each other on',
  ETCD_METRICS_PORT: 'the port etcd serves /health and /metrics on in plain HTTP (the load balancer checks it)',
  ETCD_DATA_DIR: "etcd's data directory on the node",
  ETCD_AWS_BIN_DIR: 'the directory holding the etcd, etcdctl (and etcdutl) binaries',
  ETCD_AWS_DIAL_TIMEOUT_MS: 'how long to wait for an etcd member to accept a connection',
  ETCD_AWS_CALL_TIMEOUT_MS: 'how long to wait for one etcd RPC',
  ETCD_AWS_ORPHAN_GRACE_MS: "how long a member's instance must have been gone before reconcile removes the member",
  BACKUP_KMS_KEY_ID: 'the KMS key (ID or ARN) that encrypts snapshots with SSE-KMS',
  BACKUP_KEEP_LAST: 'how many newest backups retention always keeps',
  BACKUP_KEEP_HOURLY_HOURS: 'for how many hours retention keeps one backup per hour',
  BACKUP_KEEP_DAILY_DAYS: 'for how many days retention keeps one backup per day',
  ETCD_AWS_SNAPSHOT_TIMEOUT_MS: 'how long one snapshot stream may take',
  ETCD_AWS_ALLOW_EMPTY_START: 'operator override: "true" starts an empty cluster when backups exist but none restores',
  ETCD_AWS_BUMP_REVISION: 'etcd >= 3.5: on restore, bump the revision by this much and mark it compacted (for watchers)',
  BACKUP_BUCKET: 'the S3 bucket of the backups and of the bootstrap lease',
  BACKUP_PREFIX: 'key prefix inside BACKUP_BUCKET, e.g. "etcd/"',
  ETCD_AWS_SEED_LEASE_MS: 'how long a won seed lease stays valid without renewal',
  ETCD_AWS_POLL_MS: 'pause between bootstrap attempts while waiting',
  ETCD_AWS_REGISTRATION_FRESH_MS: 'how old a peer agent\'s "no data" registration may be and still count',
  ETCD_AWS_QUORUM_LOSS_GRACE_MS: 'how long the local etcd must have had no quorum before the agent considers forcing a new cluster',
  ETCD_AWS_QUORUM_RECOVERY: '"auto" lets the survivor of a majority lost for good force a new cluster; "off" leaves that to an operator',
  ETCD_AWS_LAUNCH_HOOK: 'the launching lifecycle hook the agent completes once its member votes',
  ETCD_AWS_LAUNCH_TIMEOUT_MS: 'how long after its launch an instance may take to become a voting member before its launch is abandoned',
  ETCD_AWS_LAUNCH_HEARTBEAT_MS: "how often the agent extends the launching hook's timeout while its member catches up",
  ETCD_AWS_STACK_NAME: 'the CloudFormation stack whose rolling update waits for the agent\'s signal (unset: no signals)',
  ETCD_AWS_STACK_RESOURCE: 'the logical ID of the Auto Scaling group in that stack',
  ETCD_AWS_CRASH_LOOP_RUNS: 'how many failed etcd starts in a row make the agent mark its instance unhealthy',
  ETCD_AWS_BACKUP_FUNCTION: 'the backup function, which takes the final backup when the last member terminates',
  ETCD_AWS_LIFECYCLE_MAX_RECEIVES: "the lifecycle queue's maxReceiveCount: on the last delivery a last voter still waiting for a learner is backed up and let go",
  ETCD_AWS_AGENT_START_GRACE_MS: 'how long after its launch an instance may go without its agent registering before reconcile marks it unhealthy',
  ETCD_QUOTA_BACKEND_BYTES: "etcd's space quota in bytes: the agent gives it to etcd, reconcile reports each member's database size against it",
  ETCD_AUTO_COMPACTION_MODE: 'how etcd reads ETCD_AUTO_COMPACTION_RETENTION: "periodic" (a time span of history) or "revision" (a number of revisions)',
  ETCD_AUTO_COMPACTION_RETENTION: 'how much history etcd keeps: periodic, hours or minutes such as 1h or 30m; revision, a count such as 10000; 0 turns auto-compaction off',
  ETCD_AWS_DEFRAG_MIN_FREE_RATIO: "reconcile defragments a member once this share of its database file is free pages (0 to 1)",
  ETCD_AWS_DEFRAG_MIN_FREE_BYTES: 'and at least this many bytes of it are free',
  ETCD_AWS_DEFRAG_TIMEOUT_MS: "the deadline of one member's defragmentation",
  ETCD_AWS_NOSPACE_RECOVER_BELOW: 'after a NOSPACE alarm and a compaction, the share of the quota (0 to 1) the data in use must be under for reconcile to defragment and disarm',
  ETCD_AWS_CA_SECRET: "the Secrets Manager secret (ARN or name) holding the cluster's certificate authorities; only the issuer reads it",
  ETCD_AWS_NODE_ROLE: "the etcd instances' IAM role name: only its instance sessions get node certificates",
  ETCD_AWS_CONTROL_ROLES: "comma-separated IAM role names of the control plane's functions: only their sessions get etcd's root certificate",
  ETCD_AWS_CONTROL_FUNCTIONS: "comma-separated names of the control plane's functions (their sessions' names): only they get etcd's root certificate",
  ETCD_AWS_SERVER_DNS_NAMES: "comma-separated DNS names a node's client-port certificate may carry besides its own (the load balancer's)",
  ETCD_AWS_CERT_LIFETIME_HOURS: 'how long a node certificate is valid, in hours; agents renew theirs when a third of it is left',
  ETCD_AWS_TLS:
    '"on": etcd speaks TLS to clients and peers and requires client certificates; the agent and the functions get theirs from ETCD_AWS_ISSUER_FUNCTION. ' +
    '"migrating": the step between "off" and "on" (README, "Moving a plaintext stack to TLS"): nodes get certificates and serve TLS beside plaintext, everyone still talks plaintext',
  ETCD_AWS_ISSUER_FUNCTION: "the certificate issuer function the agent and the functions ask for their certificates",
  ETCD_AWS_CERT_DIR: "the directory of this node's keys and certificates (generations, and a `current` link)",
  AWS_LAMBDA_FUNCTION_NAME: "the issuer's own function name (Lambda sets it): callers sign it into their requests",
  AWS_REGION: 'the region (Lambda sets it)',
  ETCD_AWS_CUT_OFF_GRACE_MS:
    'how long a member the quorum side cannot reach may say it has no quorum (or stay silent) before reconcile marks its instance unhealthy',
} as const;

type Setting = keyof typeof SETTINGS;

const port = z.coerce.number().int().min(1).max(65535);
const millis = z.coerce.number().int().min(50).max(600_000);
/** A comma-separated list of strings, blanks dropped, each entry checked by `item`. */
const commaList = (item: z.ZodType<string, string>, options: { normalize?: (e: string) => string; min?: number } = {}) =>
  z
    .string()
    .transform((s) => s.split(',').map((e) => (options.normalize ?? ((x: string) => x))(e.trim())).filter((e) => e !== ''))
    .pipe(z.array(item).min(options.min ?? 0));
const endpointList = commaList(z.url({ protocol: /^https?$/ }), { min: 1 });
const name = z.string().trim().min(1);

/** etcd's suggested maximum space quota (its MaxQuotaBytes): above it etcd warns of degraded performance. */
export const MAX_QUOTA_BYTES = 8 * 1024 ** 3;
// etcd's own default quota is 2 GiB. The agent and reconcile read the same variable: the stack gives both the
// quotaBackendBytes parameter, so the DbQuotaPercent reconcile reports is of the quota etcd enforces.
const inBytes = 'must be a whole number of bytes, e.g. 4294967296 for 4 GiB';
const quotaBytes = z.coerce
  .number({ error: inBytes })
  .int(inBytes)
  .min(1, "must be positive (etcd reads 0 as its default): write 2147483648 for etcd's default 2 GiB")
  .max(MAX_QUOTA_BYTES, `must be at most ${MAX_QUOTA_BYTES} (8 GiB, etcd's suggested maximum); keep less data in etcd, or shard it`)
  .default(2 * 1024 ** 3);
/**
 * A retention etcd accepts for both modes' meaning, limited to what the stack's AutoCompactionRetention
 * parameter allows (the same pattern): a whole number (periodic: hours; revision: revisions), or hours
 * and/or minutes (periodic only). Seconds are refused: under a minute of history, a watcher that reconnects
 * after a leader election may find its revision compacted away, and minutes say every longer span.
 */
export const COMPACTION_RETENTION_PATTERN = /^(0|[1-9][0-9]*|[1-9][0-9]*[hm]|[1-9][0-9]*h[1-9][0-9]*m)$/;

const common = {
  ETCD_ENDPOINTS: endpointList.optional(),
  ETCD_CLIENT_PORT: port.default(2379),
  ETCD_PEER_PORT: port.default(2380),
  ETCD_METRICS_PORT: port.default(2381),
  ETCD_AWS_DIAL_TIMEOUT_MS: millis.default(2000),
  ETCD_AWS_CALL_TIMEOUT_MS: millis.default(5000),
  ETCD_AWS_TLS: z.enum(['on', 'migrating', 'off'], { error: 'must be "on", "migrating" or "off"' }).default('off'),
  ETCD_AWS_ISSUER_FUNCTION: name.optional(),
};

const functionSettings = {
  ...common,
  ETCD_ASG_NAME: name,
  ETCD_AWS_ORPHAN_GRACE_MS: z.coerce.number().int().min(0).max(86_400_000).default(600_000),
  BACKUP_BUCKET: name.optional(),
  BACKUP_PREFIX: z.string().default(''),
  BACKUP_KMS_KEY_ID: name.optional(),
  BACKUP_KEEP_LAST: z.coerce.number().int().min(1).max(10_000).default(10),
  BACKUP_KEEP_HOURLY_HOURS: z.coerce.number().int().min(0).max(24 * 365).default(24),
  BACKUP_KEEP_DAILY_DAYS: z.coerce.number().int().min(0).max(3650).default(7),
  ETCD_AWS_SNAPSHOT_TIMEOUT_MS: z.coerce.number().int().min(1000).max(900_000).default(600_000),
  ETCD_AWS_BACKUP_FUNCTION: name.optional(),
  ETCD_AWS_LIFECYCLE_MAX_RECEIVES: z.coerce.number().int().min(1).max(1000).default(5),
  ETCD_AWS_AGENT_START_GRACE_MS: z.coerce.number().int().min(1000).max(86_400_000).default(900_000),
  ETCD_AWS_CUT_OFF_GRACE_MS: z.coerce.number().int().min(1000).max(86_400_000).default(300_000),
  // How recent an agent's registration must be to say anything now (the agents refresh theirs three times as often).
  ETCD_AWS_REGISTRATION_FRESH_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  ETCD_QUOTA_BACKEND_BYTES: quotaBytes,
  // Half the file free is what a defragmentation is worth a member's pause for (etcd-druid's threshold is of
  // the same kind); under 64 MiB free there is nothing worth giving back.
  ETCD_AWS_DEFRAG_MIN_FREE_RATIO: z.coerce.number().min(0).max(1).default(0.5),
  ETCD_AWS_DEFRAG_MIN_FREE_BYTES: z.coerce.number().int().min(0).default(64 * 1024 ** 2),
  // Well inside reconcile's 120 s, leaving time for the Status calls around it.
  ETCD_AWS_DEFRAG_TIMEOUT_MS: z.coerce.number().int().min(1000).max(600_000).default(60_000),
  // The DbQuotaAlarm's threshold: a cluster still over it after compaction would only fill up again at once.
  ETCD_AWS_NOSPACE_RECOVER_BELOW: z.coerce.number().gt(0).max(1).default(0.8),
};

const dnsList = commaList(
  z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, 'must be DNS names, e.g. etcd-nlb-123.elb.us-east-1.amazonaws.com'),
  { normalize: (e) => e.toLowerCase() },
);

const schemas = {
  issuer: z.object({
    ETCD_ASG_NAME: name,
    ETCD_AWS_CA_SECRET: name,
    ETCD_AWS_NODE_ROLE: z.string().regex(/^[\w+=,.@-]{1,64}$/, 'must be an IAM role name (not an ARN)'),
    ETCD_AWS_CONTROL_ROLES: commaList(z.string().regex(/^[\w+=,.@-]{1,64}$/, 'must be IAM role names (not ARNs)')).default([]),
    ETCD_AWS_CONTROL_FUNCTIONS: commaList(z.string().regex(/^[\w-]{1,64}$/, 'must be Lambda function names (not ARNs)')).default([]),
    ETCD_AWS_SERVER_DNS_NAMES: dnsList.default([]),
    // A week: a stolen certificate is worth a week at most, and an agent renewing at a third left has days to retry.
    ETCD_AWS_CERT_LIFETIME_HOURS: z.coerce.number().int().min(1).max(24 * 365).default(168),
    AWS_LAMBDA_FUNCTION_NAME: name,
    AWS_REGION: name,
  }),
  function: z.object(functionSettings),
  backup: z.object({ ...functionSettings, BACKUP_BUCKET: name }),
  agent: z.object({
    ...common,
    ETCD_ASG_NAME: name.optional(),
    ETCD_DATA_DIR: name.default('/var/lib/etcd'),
    ETCD_AWS_BIN_DIR: name.optional(),
    BACKUP_BUCKET: name,
    BACKUP_PREFIX: z.string().default(''),
    ETCD_AWS_SEED_LEASE_MS: millis.default(30_000),
    ETCD_AWS_POLL_MS: millis.default(2000),
    ETCD_AWS_REGISTRATION_FRESH_MS: millis.default(30_000),
    ETCD_AWS_QUORUM_LOSS_GRACE_MS: z.coerce.number().int().min(500).max(3_600_000).default(60_000),
    ETCD_AWS_QUORUM_RECOVERY: z.enum(['auto', 'off']).default('auto'),
    ETCD_AWS_ALLOW_EMPTY_START: z.enum(['true', 'false']).default('false'),
    ETCD_AWS_BUMP_REVISION: z.coerce.number().int().min(1).optional(),
    ETCD_AWS_LAUNCH_HOOK: name.default('etcd-launch'),
    ETCD_AWS_LAUNCH_TIMEOUT_MS: z.coerce.number().int().min(1000).max(86_400_000).default(1_800_000),
    ETCD_AWS_LAUNCH_HEARTBEAT_MS: z.coerce.number().int().min(500).max(3_600_000).default(120_000),
    ETCD_AWS_STACK_NAME: name.optional(),
    ETCD_AWS_STACK_RESOURCE: name.default('NodeGroup'),
    ETCD_AWS_CRASH_LOOP_RUNS: z.coerce.number().int().min(2).max(100).default(5),
    ETCD_AWS_CERT_DIR: name.default('/var/lib/etcd-aws/pki'),
    ETCD_AWS_SERVER_DNS_NAMES: dnsList.default([]),
    ETCD_QUOTA_BACKEND_BYTES: quotaBytes,
    // etcd's auto-compaction is off unless asked for; every node gets it, with one hour of history by
    // default (etcd's maintenance guide's example): see the README's "Compaction and space".
    ETCD_AUTO_COMPACTION_MODE: z.enum(['periodic', 'revision'], { error: 'must be "periodic" or "revision"' }).default('periodic'),
    ETCD_AUTO_COMPACTION_RETENTION: z
      .string()
      .trim()
      .regex(COMPACTION_RETENTION_PATTERN, 'must be a whole number (periodic: hours; revision: revisions), or periodic hours and minutes such as 1h, 30m or 1h30m; 0 turns it off')
      .default('1h'),
  }).superRefine((c, ctx) => {
    // etcd would read "1h" in revision mode as a duration in nanoseconds, i.e. a retention of 3.6e12 revisions.
    if (c.ETCD_AUTO_COMPACTION_MODE === 'revision' && !/^[0-9]+$/.test(c.ETCD_AUTO_COMPACTION_RETENTION)) {
      ctx.addIssue({
        code: 'custom',
        path: ['ETCD_AUTO_COMPACTION_RETENTION'],
        message: 'with ETCD_AUTO_COMPACTION_MODE=revision it must be a number of revisions, e.g. 10000 (or set the mode to periodic for a time span)',
      });
    }
    // The seed election is safe only if a peer's "no data" registration cannot be older than a lease: see
    // docs/ARCHITECTURE.md, "Seed election".
    if (c.ETCD_AWS_REGISTRATION_FRESH_MS > c.ETCD_AWS_SEED_LEASE_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['ETCD_AWS_REGISTRATION_FRESH_MS'],
        message: `must not be longer than ETCD_AWS_SEED_LEASE_MS (${c.ETCD_AWS_SEED_LEASE_MS})`,
      });
    }
  }),
};

export type Role = keyof typeof schemas;

/** How etcd runs: plaintext, TLS, or the migration step between them (both on the client port). */
export type TlsMode = 'off' | 'migrating' | 'on';

interface CommonConfig {
  /** Explicit etcd client URLs; when absent they come from the group's instances. */
  readonly endpoints: readonly string[] | undefined;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly metricsPort: number;
  readonly dialTimeoutMs: number;
  readonly callTimeoutMs: number;
  /** ETCD_AWS_TLS: `migrating` is the step of a running plaintext stack towards `on`. */
  readonly tlsMode: TlsMode;
  /**
   * The scheme the agent and the functions use for etcd's client URLs, and of this node's peer URL: `https`
   * with ETCD_AWS_TLS=on; `http` otherwise (`migrating` nodes serve TLS too, but nobody relies on it yet).
   */
  readonly scheme: 'http' | 'https';
  /** With ETCD_AWS_TLS=on or migrating: the issuer of the certificates (its function name); undefined: none. */
  readonly tlsIssuer: string | undefined;
}

export interface BackupSettings {
  readonly bucket: string;
  readonly prefix: string;
  readonly kmsKeyId: string | undefined;
  readonly retention: { readonly keepLast: number; readonly hourlyForMs: number; readonly dailyForMs: number; readonly orphanAfterMs: number };
  readonly snapshotTimeoutMs: number;
}

export interface FunctionConfig extends CommonConfig {
  readonly asgName: string;
  readonly orphanGraceMs: number;
  /** lifecycle: the backup function that takes the final backup of a scale-in to zero. */
  readonly backupFunction: string | undefined;
  /** lifecycle: the queue's maxReceiveCount (its redrive policy), to know a message's last delivery. */
  readonly lifecycleMaxReceives: number;
  /** reconcile: how long an instance may run without its agent registering before it is marked unhealthy. */
  readonly agentStartGraceMs: number;
  /** How long a member cut off from the quorum side may stay so before reconcile marks its instance unhealthy. */
  readonly cutOffGraceMs: number;
  /** How recent an agent's registration must be to count. */
  readonly registrationFreshMs: number;
  /** reconcile: etcd's space quota, for the database size as a percentage of it. */
  readonly quotaBytes: number;
  /** reconcile: when a member is worth defragmenting, and when a NOSPACE alarm may be disarmed. */
  readonly maintenance: { readonly minFreeRatio: number; readonly minFreeBytes: number; readonly recoverBelowRatio: number; readonly defragTimeoutMs: number };
  /** Set when BACKUP_BUCKET is (lifecycle uses it for the final backup of a cluster scaled in to zero). */
  readonly backup: BackupSettings | undefined;
}

export interface BackupConfig extends FunctionConfig {
  readonly backup: BackupSettings;
}

export interface AgentConfig extends CommonConfig {
  /** Overrides the group found through DescribeAutoScalingInstances. */
  readonly asgName: string | undefined;
  readonly dataDir: string;
  /** Directory of the etcd binaries; when absent they are looked up on PATH. */
  readonly binDir: string | undefined;
  readonly bucket: string;
  readonly prefix: string;
  readonly timing: { readonly leaseMs: number; readonly pollMs: number; readonly freshMs: number };
  readonly allowEmptyStart: boolean;
  readonly bumpRevision: number | undefined;
  /** How long the local etcd must have had no quorum before a forced single-member recovery is considered. */
  readonly quorumLossGraceMs: number;
  /** False: never force a new cluster; a majority lost for good waits for an operator. */
  readonly quorumRecovery: boolean;
  /** The launching lifecycle hook: completed (CONTINUE) once the member votes, abandoned after the timeout. */
  readonly launch: { readonly hookName: string; readonly timeoutMs: number; readonly heartbeatMs: number };
  /** The stack and resource a rolling update waits on for this instance's signal; undefined outside CloudFormation. */
  readonly stack: { readonly name: string; readonly resource: string } | undefined;
  /** Failed etcd starts in a row after which the agent marks its instance unhealthy. */
  readonly crashLoopRuns: number;
  /** The certificate issuer function and where this node keeps its keys and certificates. */
  readonly pki: { readonly issuerFunction: string | undefined; readonly dir: string; readonly serverDnsNames: readonly string[] };
  /** etcd's space quota and auto-compaction, as etcd's own settings (`--quota-backend-bytes`, `--auto-compaction-*`). */
  readonly space: EtcdSpace;
}

export interface IssuerConfig {
  readonly asgName: string;
  readonly caSecret: string;
  readonly nodeRoleName: string;
  readonly controlRoleNames: readonly string[];
  readonly controlFunctionNames: readonly string[];
  readonly serverDnsNames: readonly string[];
  readonly certLifetimeMs: number;
  /** The issuer's function name: the audience callers sign into their requests. */
  readonly functionName: string;
  readonly region: string;
}

function explain(issue: z.core.$ZodIssue, env: Record<string, string | undefined>): string {
  const key = String(issue.path[0] ?? '');
  const what = key in SETTINGS ? SETTINGS[key as Setting] : 'a setting';
  if (env[key] === undefined || env[key] === '') return `${key} is required (${what})${issue.code === 'custom' ? `: ${issue.message}` : ''}`;
  return `${key}=${JSON.stringify(env[key])} is invalid (${what}): ${issue.message}`;
}

function parse<R extends Role>(role: R, env: Record<string, string | undefined>): z.infer<(typeof schemas)[R]> {
  // Empty strings count as unset: CloudFormation and systemd both like to pass `VAR=`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schemas[role].safeParse(present);
  if (!result.success) {
    throw new ConfigError(`invalid configuration: ${result.error.issues.map((i) => explain(i, env)).join('; ')}`);
  }
  return result.data as z.infer<(typeof schemas)[R]>;
}

function commonOf(c: z.infer<(typeof schemas)[Exclude<Role, 'issuer'>]>): CommonConfig {
  if (c.ETCD_AWS_TLS !== 'off' && c.ETCD_AWS_ISSUER_FUNCTION === undefined) {
    throw new ConfigError(
      `invalid configuration: ETCD_AWS_ISSUER_FUNCTION is required with ETCD_AWS_TLS=${c.ETCD_AWS_TLS} (${SETTINGS.ETCD_AWS_ISSUER_FUNCTION}); the stack sets both`,
    );
  }
  const scheme = c.ETCD_AWS_TLS === 'on' ? 'https' : 'http';
  const wrong = c.ETCD_ENDPOINTS?.find((e) => !e.startsWith(`${scheme}://`));
  if (wrong !== undefined) {
    throw new ConfigError(`invalid configuration: ETCD_ENDPOINTS has ${wrong}, but with ETCD_AWS_TLS=${c.ETCD_AWS_TLS} every endpoint must be ${scheme}://`);
  }
  return {
    tlsMode: c.ETCD_AWS_TLS,
    scheme,
    tlsIssuer: c.ETCD_AWS_TLS === 'off' ? undefined : c.ETCD_AWS_ISSUER_FUNCTION,
    endpoints: c.ETCD_ENDPOINTS,
    clientPort: c.ETCD_CLIENT_PORT,
    peerPort: c.ETCD_PEER_PORT,
    metricsPort: c.ETCD_METRICS_PORT,
    dialTimeoutMs: c.ETCD_AWS_DIAL_TIMEOUT_MS,
    callTimeoutMs: c.ETCD_AWS_CALL_TIMEOUT_MS,
  };
}

/**
 * Reads and validates the settings of one entry point (a Lambda function or the node agent) from an
 * environment, once, at cold start. Throws a ConfigError naming every bad variable and what it is for.
 * Tests pass a plain object instead of mutating `process.env`.
 */
export function loadConfig(env: Record<string, string | undefined>, role: 'function'): FunctionConfig;
export function loadConfig(env: Record<string, string | undefined>, role: 'backup'): BackupConfig;
export function loadConfig(env: Record<string, string | undefined>, role: 'agent'): AgentConfig;
export function loadConfig(env: Record<string, string | undefined>, role: 'issuer'): IssuerConfig;
export function loadConfig(env: Record<string, string | undefined>, role: Role): FunctionConfig | BackupConfig | AgentConfig | IssuerConfig {
  if (role === 'issuer') {
    const c = parse('issuer', env);
    return Object.freeze({
      asgName: c.ETCD_ASG_NAME,
      caSecret: c.ETCD_AWS_CA_SECRET,
      nodeRoleName: c.ETCD_AWS_NODE_ROLE,
      controlRoleNames: Object.freeze(c.ETCD_AWS_CONTROL_ROLES),
      controlFunctionNames: Object.freeze(c.ETCD_AWS_CONTROL_FUNCTIONS),
      serverDnsNames: Object.freeze(c.ETCD_AWS_SERVER_DNS_NAMES),
      certLifetimeMs: c.ETCD_AWS_CERT_LIFETIME_HOURS * 3_600_000,
      functionName: c.AWS_LAMBDA_FUNCTION_NAME,
      region: c.AWS_REGION,
    });
  }
  if (role === 'function' || role === 'backup') {
    const c = parse(role, env);
    const backup: BackupSettings | undefined =
      c.BACKUP_BUCKET === undefined
        ? undefined
        : Object.freeze({
            bucket: c.BACKUP_BUCKET,
            prefix: c.BACKUP_PREFIX,
            kmsKeyId: c.BACKUP_KMS_KEY_ID,
            retention: Object.freeze({
              keepLast: c.BACKUP_KEEP_LAST,
              hourlyForMs: c.BACKUP_KEEP_HOURLY_HOURS * 3_600_000,
              dailyForMs: c.BACKUP_KEEP_DAILY_DAYS * 86_400_000,
              orphanAfterMs: 86_400_000,
            }),
            snapshotTimeoutMs: c.ETCD_AWS_SNAPSHOT_TIMEOUT_MS,
          });
    return Object.freeze({
      ...commonOf(c),
      asgName: c.ETCD_ASG_NAME,
      orphanGraceMs: c.ETCD_AWS_ORPHAN_GRACE_MS,
      backupFunction: c.ETCD_AWS_BACKUP_FUNCTION,
      lifecycleMaxReceives: c.ETCD_AWS_LIFECYCLE_MAX_RECEIVES,
      agentStartGraceMs: c.ETCD_AWS_AGENT_START_GRACE_MS,
      cutOffGraceMs: c.ETCD_AWS_CUT_OFF_GRACE_MS,
      registrationFreshMs: c.ETCD_AWS_REGISTRATION_FRESH_MS,
      quotaBytes: c.ETCD_QUOTA_BACKEND_BYTES,
      maintenance: Object.freeze({
        minFreeRatio: c.ETCD_AWS_DEFRAG_MIN_FREE_RATIO,
        minFreeBytes: c.ETCD_AWS_DEFRAG_MIN_FREE_BYTES,
        recoverBelowRatio: c.ETCD_AWS_NOSPACE_RECOVER_BELOW,
        defragTimeoutMs: c.ETCD_AWS_DEFRAG_TIMEOUT_MS,
      }),
      backup,
    });
  }
  const c = parse('agent', env);
  return Object.freeze({
    ...commonOf(c),
    asgName: c.ETCD_ASG_NAME,
    dataDir: c.ETCD_DATA_DIR,
    binDir: c.ETCD_AWS_BIN_DIR,
    bucket: c.BACKUP_BUCKET,
    prefix: c.BACKUP_PREFIX,
    timing: Object.freeze({ leaseMs: c.ETCD_AWS_SEED_LEASE_MS, pollMs: c.ETCD_AWS_POLL_MS, freshMs: c.ETCD_AWS_REGISTRATION_FRESH_MS }),
    allowEmptyStart: c.ETCD_AWS_ALLOW_EMPTY_START === 'true',
    bumpRevision: c.ETCD_AWS_BUMP_REVISION,
    quorumLossGraceMs: c.ETCD_AWS_QUORUM_LOSS_GRACE_MS,
    quorumRecovery: c.ETCD_AWS_QUORUM_RECOVERY === 'auto',
    launch: Object.freeze({ hookName: c.ETCD_AWS_LAUNCH_HOOK, timeoutMs: c.ETCD_AWS_LAUNCH_TIMEOUT_MS, heartbeatMs: c.ETCD_AWS_LAUNCH_HEARTBEAT_MS }),
    stack: c.ETCD_AWS_STACK_NAME === undefined ? undefined : Object.freeze({ name: c.ETCD_AWS_STACK_NAME, resource: c.ETCD_AWS_STACK_RESOURCE }),
    crashLoopRuns: c.ETCD_AWS_CRASH_LOOP_RUNS,
    pki: Object.freeze({ issuerFunction: c.ETCD_AWS_ISSUER_FUNCTION, dir: c.ETCD_AWS_CERT_DIR, serverDnsNames: Object.freeze(c.ETCD_AWS_SERVER_DNS_NAMES) }),
    space: Object.freeze({
      quotaBytes: c.ETCD_QUOTA_BACKEND_BYTES,
      compaction: Object.freeze({ mode: c.ETCD_AUTO_COMPACTION_MODE, retention: c.ETCD_AUTO_COMPACTION_RETENTION }),
    }),
  });
}
