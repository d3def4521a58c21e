/**
 * The project's small error family. Every error keeps its `cause`, and says whether a retry can fix it:
 * handlers rethrow retryable errors (SQS redelivers) and acknowledge fatal ones with a log line and a metric.
 */
export class EtcdAwsError extends Error {
  /** True when the same call may succeed later (a member unreachable, a throttled API). */
  readonly retryable: boolean;

  constructor(message: string, options?: ErrorOptions & { retryable?: boolean }) {
    super(message, options);
    this.name = new.target.name;
    this.retryable = options?.retryable ?? false;
  }
}

/** Configuration is missing or malformed: nothing will work until an operator changes it. */
export class ConfigError extends EtcdAwsError {}

/** An event or message does not have a shape we act on. Never retried. */
export class InvalidEventError extends EtcdAwsError {}

/** No etcd member answered, or the cluster did not answer in time. A retry may succeed. */
export class EtcdUnavailableError extends EtcdAwsError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, retryable: true });
  }
}

/**
 * etcd refused a membership change because not every voter has been connected to the leader for 5 s yet
 * (its strict reconfiguration check, "unhealthy cluster"): right after a member joined or leadership moved.
 * It clears by itself within seconds.
 */
export class MembershipChangeTooSoonError extends EtcdUnavailableError {}

/**
 * The etcd client holds off calls to members that just failed several times in a row (its circuit breaker
 * reopens after a few seconds). Retrying after that pause may succeed.
 */
export class EtcdBackoffError extends EtcdUnavailableError {}

/** A membership change would leave the cluster without quorum. */
export class QuorumAtRiskError extends EtcdAwsError {}

/** A snapshot failed its SHA-256 or size check. */
export class SnapshotIntegrityError extends EtcdAwsError {}

/**
 * A download ended before the whole object arrived (a reset connection, a read timeout): it says nothing about
 * the object, and a retry may read it whole.
 */
export class DownloadInterruptedError extends EtcdAwsError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, retryable: true });
  }
}

/**
 * Another backup held the backup lock for as long as a caller that must not skip (the final backup of a
 * scale-in to zero) could wait. It ends by itself: the holder finishes, or its lock expires.
 */
export class BackupLockBusyError extends EtcdAwsError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, retryable: true });
  }
}

/**
 * Every write of the backup lock lost its race, a bounded number of times in a row: other invocations keep
 * taking and releasing it. A retry, later, finds it settled.
 */
export class BackupLockContendedError extends EtcdAwsError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, retryable: true });
  }
}

/**
 * A final backup held the lock with less of its invocation left than a backup needs (decideBackupTime): it
 * released the lock rather than start an upload its deadline would cut off. A retry has the function's full time.
 */
export class BackupDeadlineError extends EtcdAwsError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, retryable: true });
  }
}

/** The instance's own identity or its Auto Scaling group could not be established. */
export class DiscoveryError extends EtcdAwsError {}

/** Short description of any thrown value, for log lines and error messages. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
