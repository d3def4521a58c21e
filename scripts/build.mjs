#!/usr/bin/env node
// Builds one ESM bundle per Lambda function and a single-file node agent with esbuild.
//
// etcd3 loads `${__dirname}/../proto/rpc.proto` when its module is first evaluated, which a bundle cannot
// satisfy. The plugin below parses etcd3's proto files at build time and embeds them as a protobufjs JSON
// descriptor, loaded with @grpc/proto-loader's fromJSON: the bundle is self-contained and reads no file.
// If etcd3 ever changes that line, the build fails here instead of at run time.
import { readFile, mkdir, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const protobuf = require('protobufjs');

export const FUNCTIONS = ['agent-artifact', 'backup', 'issuer', 'lifecycle', 'reconcile'];

const LOAD_SYNC = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {';

function etcdProtoDescriptor() {
  const etcd3Dir = path.dirname(require.resolve('etcd3/package.json'));
  const protoRoot = new protobuf.Root();
  protoRoot.loadSync(path.join(etcd3Dir, 'proto', 'rpc.proto'), { keepCase: true });
  protoRoot.resolveAll();
  return JSON.stringify(protoRoot.toJSON());
}

const embedEtcdProto = {
  name: 'embed-etcd3-proto',
  setup(build) {
    let descriptor;
    build.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const hits = source.split(LOAD_SYNC).length - 1;
      if (hits !== 1) {
        throw new Error(
          `etcd3's connection-pool.js no longer loads its proto with "${LOAD_SYNC}" (found ${hits} times); ` +
            'update scripts/build.mjs for the new etcd3 version',
        );
      }
      descriptor ??= etcdProtoDescriptor();
      return { contents: source.replace(LOAD_SYNC, `(0, proto_loader_1.fromJSON)(${descriptor}, {`), loader: 'js' };
    });
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  // Stack traces need the mappings, not the sources: a map without them is 3 MiB instead of 10, and node
  // (--enable-source-maps, as the functions run) parses it at load: 15 MiB less RSS at start.
  sourcesContent: false,
  minify: true,
  keepNames: true,
  // The ES module builds first: the AWS SDK's dist-es tree-shakes (its dist-cjs is one file per client,
  // 1 MiB for EC2 alone), which cuts a third off each function's bundle and its cold-start parse time.
  mainFields: ['module', 'main'],
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [embedEtcdProto],
  // CommonJS dependencies (grpc-js, etcd3) call require() for Node's built-ins.
  banner: { js: "import { createRequire as __etcdAwsCreateRequire } from 'node:module'; const require = __etcdAwsCreateRequire(import.meta.url);" },
};

/** Builds into `outDir` (default dist/): functions/<name>/index.mjs and node-agent/node-agent.mjs. */
export async function build({ outDir = path.join(root, 'dist'), quiet = false } = {}) {
  await rm(outDir, { recursive: true, force: true });
  const outputs = [];
  for (const name of FUNCTIONS) {
    const outfile = path.join(outDir, 'functions', name, 'index.mjs');
    await mkdir(path.dirname(outfile), { recursive: true });
    await esbuild.build({ ...common, entryPoints: [path.join(root, 'functions', `${name}.ts`)], outfile });
    outputs.push(outfile);
  }
  const agent = path.join(outDir, 'node-agent', 'node-agent.mjs');
  await esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'node-agent', 'main.ts')],
    outfile: agent,
  });
  outputs.push(agent);
  for (const file of outputs) {
    const { size } = await stat(file);
    if (!quiet) process.stdout.write(`built ${path.relative(root, file)} (${(size / 1024).toFixed(0)} KiB)\n`);
  }
  return { agent, functions: Object.fromEntries(FUNCTIONS.map((n, i) => [n, outputs[i]])) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  build().catch((error) => {
    process.stderr.write(`build failed: ${error.message}\n`);
    process.exit(1);
  });
}
