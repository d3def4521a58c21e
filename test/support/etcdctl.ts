import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { etcdctlBin } from '../../testbed/tools.js';

const run = promisify(execFile);

/** Who etcdctl is: the CA it trusts and the client certificate it presents (none: plaintext or anonymous). */
export interface CtlIdentity {
  readonly cacert?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

/** etcdctl against `url` as `who`, with short deadlines; never throws: a refusal is `ok: false` with etcdctl's words. */
export async function etcdctlAs(url: string, args: readonly string[], who: CtlIdentity = {}): Promise<{ ok: boolean; out: string }> {
  return run(etcdctlBin(), [
    `--endpoints=${url}`,
    '--command-timeout=3s',
    '--dial-timeout=2s',
    ...(who.cacert ? [`--cacert=${who.cacert}`] : []),
    ...(who.cert ? [`--cert=${who.cert}`, `--key=${who.key ?? ''}`] : []),
    ...args,
  ]).then(
    (r) => ({ ok: true, out: r.stdout + r.stderr }),
    (error: unknown) => {
      const e = error as { stdout?: string; stderr?: string };
      return { ok: false, out: (e.stdout ?? '') + (e.stderr ?? '') };
    },
  );
}
