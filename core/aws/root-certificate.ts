import { renewalDue, usableNow } from '../domain/issuance.js';
import { describeError } from '../errors.js';
import type { EtcdTlsCredentials } from '../etcd/cluster.js';
import type { Log } from '../logger.js';
import { requestCertificate, type IssuedCertificate, type IssuerClientDeps } from './issuer-client.js';

/**
 * The control plane's etcd identity: a `root` client certificate the issuer gives a session of one of this
 * stack's function roles, kept in memory for the life of the Lambda environment (its key never touches a
 * disk) and renewed when a third of its lifetime is left. `ready()` before each invocation's etcd calls;
 * `credentials()` is what the etcd client reads each time it connects.
 */
export class RootCertificate {
  private current: IssuedCertificate | undefined;

  constructor(
    private readonly issuer: IssuerClientDeps,
    private readonly log: Log,
    private readonly now: () => number = () => Date.now(),
  ) {}

  async ready(): Promise<void> {
    const held = this.current;
    const validity = [held && { notBefore: held.notBefore, notAfter: held.notAfter }];
    const decision = renewalDue(validity, this.now());
    if (!decision.due) return;
    try {
      this.current = await requestCertificate(this.issuer, 'root', { ips: [], dnsNames: [] });
    } catch (error) {
      // The certificate held still works: this invocation goes on with it, the next one asks again.
      if (!held || !usableNow(validity, this.now())) throw error;
      this.log.warn("could not renew the control plane's etcd certificate; using the one held while it is valid", { validUntil: new Date(held.notAfter).toISOString(), error: describeError(error) });
      return;
    }
    this.log.info('obtained the control plane\'s etcd certificate', { reason: decision.reason, notAfter: new Date(this.current.notAfter).toISOString() });
  }

  credentials(): EtcdTlsCredentials {
    const held = this.current;
    if (!held) throw new Error('RootCertificate.credentials() before ready(): the handler must obtain its certificate first');
    return { caPem: Buffer.from(held.clientCaPem), certPem: Buffer.from(held.certificatePem), keyPem: Buffer.from(held.keyPem) };
  }
}
