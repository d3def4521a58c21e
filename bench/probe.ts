/**
 * The work bench/main.ts measures in a process of its own (so each figure has its own peak RSS and no warm
 * state): `node --import tsx bench/probe.ts <probe> <args…>`. Each prints one line `BENCH {json}` with the
 * measured time (`ms`, the work only, not node's start), `maxRssKiB` and figures of its own.
 *
 * - `pipeline <endpoint>`: our backup pipeline with a sink that discards: Maintenance.Snapshot through
 *   Etcd3Cluster.snapshot and the SnapshotVerifier, as takeBackup streams it, minus S3; also how long the
 *   first byte took (connecting, and etcd starting the snapshot).
 * - `save-then-upload <endpoint> <file> <bucket> <key>`: what a cron script does instead: `etcdctl snapshot
 *   save` to a file, then the SDK's multipart upload of that file (lib-storage, its default part size and
 *   concurrency), timed in two parts.
 * - `download-then-restore <bucket> <key> <file> <dataDir>`: the restore a script does: GetObject to a
 *   file, then etcdutl (etcdctl on 3.4) restore, timed in two parts.
 * - `agent-restore <bucket> <snapshotKey> <metadataKey> <dataDir>`: the agent's restore of the same backup
 *   (restoreBackup: metadata, download through the verifier to a file, restore, the data dir moved in place).
 */
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { S3SnapshotStore } from '../core/aws/s3-snapshot-store.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { EtcdRestoreTool } from '../core/etcd/restore-tool.js';
import { SnapshotVerifier } from '../core/snapshot-verifier.js';
import { restoreBackup } from '../core/use-cases/restore.js';
import { etcdRelease, etcdctlBin } from '../testbed/tools.js';
import { ms } from './stats.js';

const run = promisify(execFile);

function report(fields: Record<string, number>): void {
  process.stdout.write(`\nBENCH ${JSON.stringify({ ...fields, maxRssKiB: process.resourceUsage().maxRSS })}\n`);
}

async function discardPipeline(endpoint: string): Promise<void> {
  const etcd = new Etcd3Cluster([endpoint], { dialTimeoutMs: 2000, callTimeoutMs: 10_000 });
  try {
    const t = process.hrtime.bigint();
    const snapshot = await etcd.snapshot(endpoint, 600_000);
    const verifier = new SnapshotVerifier();
    let firstByteMs = 0;
    const discard = new Writable({
      write: (_chunk, _encoding, callback) => {
        firstByteMs ||= ms(t);
        callback();
      },
    });
    await pipeline(snapshot.stream, verifier, discard);
    const { size } = verifier.verified();
    report({ ms: ms(t), size, firstByteMs });
  } finally {
    etcd.close();
  }
}

async function saveThenUpload(endpoint: string, file: string, bucket: string, key: string): Promise<void> {
  const t = process.hrtime.bigint();
  await run(etcdctlBin(), ['--endpoints', endpoint, 'snapshot', 'save', file], { env: { PATH: process.env.PATH, ETCDCTL_API: '3' } });
  const saveMs = ms(t);
  const u = process.hrtime.bigint();
  await new Upload({ client: new S3Client({}), params: { Bucket: bucket, Key: key, Body: createReadStream(file) } }).done();
  const uploadMs = ms(u);
  report({ ms: ms(t), saveMs, uploadMs });
  await rm(file, { force: true });
}

async function downloadThenRestore(bucket: string, key: string, file: string, dataDir: string): Promise<void> {
  const tool = await EtcdRestoreTool.find(etcdRelease().binDir);
  const t = process.hrtime.bigint();
  const out = await new S3Client({}).send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  await pipeline(out.Body as Readable, createWriteStream(file));
  const downloadMs = ms(t);
  const r = process.hrtime.bigint();
  await tool.restore(file, { name: 'r', peerUrl: 'http://127.0.0.1:2380', token: 't', dataDir, bumpRevision: undefined });
  const restoreMs = ms(r);
  report({ ms: ms(t), downloadMs, restoreMs });
  await rm(file, { force: true });
}

async function agentRestore(bucket: string, snapshotKey: string, metadataKey: string, dataDir: string): Promise<void> {
  const tool = await EtcdRestoreTool.find(etcdRelease().binDir);
  const store = new S3SnapshotStore(new S3Client({}), bucket);
  const t = process.hrtime.bigint();
  await restoreBackup({ snapshotKey, metadataKey }, { name: 'r', peerUrl: 'http://127.0.0.1:2380', token: 't' }, { store, restorer: tool, dataDir, bumpRevision: undefined });
  report({ ms: ms(t) });
}

const [probe, ...args] = process.argv.slice(2);
const probes: Record<string, (...a: string[]) => Promise<void>> = {
  pipeline: discardPipeline,
  'save-then-upload': saveThenUpload,
  'download-then-restore': downloadThenRestore,
  'agent-restore': agentRestore,
};
const chosen = probe === undefined ? undefined : probes[probe];
if (!chosen || args.some((a) => a === '')) {
  process.stderr.write(`usage: bench/probe.ts <${Object.keys(probes).join('|')}> <args…> (got: ${process.argv.slice(2).join(' ')})\n`);
  process.exit(2);
}
await chosen(...args);
