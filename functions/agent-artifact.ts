/**
 * Carries the node-agent bundle: this function's deployment package also holds
 * dist/node-agent/node-agent.mjs, which each instance downloads at boot (lambda:GetFunction gives the
 * package's address) and checks against the SHA-256 in its user data. Invoked, it describes that bundle.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export const handler = async (): Promise<{ file: string; size: number; sha256: string }> => {
  const file = path.join(process.env.LAMBDA_TASK_ROOT ?? process.cwd(), 'dist', 'node-agent', 'node-agent.mjs');
  const bytes = await readFile(file);
  return { file: 'dist/node-agent/node-agent.mjs', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
};
