#!/usr/bin/env node
// Builds the etcd releases the test bed runs from etcd's published Go modules (testbed/etcd-builds/<minor>/),
// once per pinned version, into a cache outside the work tree, with progress output (minutes on 2 cores
// the first time, nothing afterwards).
//
//   node scripts/etcd-build.mjs                 every supported version (what scripts/setup.sh runs)
//   node scripts/etcd-build.mjs 3.7             only that one ("3.7" or "3.7.3")
//   node scripts/etcd-build.mjs --bin-dir 3.7   print where that version's etcd, etcdctl and etcdutl are
//   node scripts/etcd-build.mjs --list          print "minor release [default]" for each supported version
//   --quiet                                     print only what it builds
import { createHash } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RECIPES = path.join(root, 'testbed', 'etcd-builds');
const TOOLS = ['etcd', 'etcdctl', 'etcdutl'];
const TOOL_PACKAGES = ['go.etcd.io/etcd/etcdctl/v3', 'go.etcd.io/etcd/etcdutl/v3'];

/** The variable that picks the etcd version of a test run. Not ETCD_VERSION: etcd reads that one as its --version flag. */
export const SELECTION_VARIABLE = 'ETCD_AWS_ETCD_VERSION';

/** Where builds are kept: ETCD_AWS_CACHE_DIR, else the user's cache directory. */
export function etcdCacheDir(env = process.env) {
  return env.ETCD_AWS_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'etcd-aws');
}

function compareMinor(a, b) {
  const [a1, a2] = a.split('.').map(Number);
  const [b1, b2] = b.split('.').map(Number);
  return a1 - b1 || a2 - b2;
}

/**
 * Every supported etcd build, oldest minor first: its minor version, the release its go.mod pins, the recipe
 * directory, and the cache directory of its binaries (named after the version and a hash of the recipe, so a
 * changed pin is a new build and an unchanged one is never rebuilt).
 */
export function etcdBuilds(env = process.env) {
  return readdirSync(RECIPES, { withFileTypes: true })
    .filter((d) => d.isDirectory() && /^\d+\.\d+$/.test(d.name))
    .map((d) => {
      const dir = path.join(RECIPES, d.name);
      const files = ['go.mod', 'go.sum', 'etcd/main.go'].map((f) => readFileSync(path.join(dir, f)));
      const goMod = files[0].toString('utf8');
      const version = /^require go\.etcd\.io\/etcd\/server\/v3 v(\d+\.\d+\.\d+)\s*$/m.exec(goMod)?.[1];
      if (!version || !version.startsWith(`${d.name}.`)) {
        throw new Error(`${dir}/go.mod must pin go.etcd.io/etcd/server/v3 at a ${d.name}.x release on its own require line`);
      }
      const hash = createHash('sha256');
      for (const f of files) hash.update(f);
      const home = path.join(etcdCacheDir(env), 'etcd', `${version}-${hash.digest('hex').slice(0, 12)}`);
      return { minor: d.name, version, dir, home, binDir: path.join(home, 'bin') };
    })
    .sort((a, b) => compareMinor(a.minor, b.minor));
}

/** The minor version of the stack's default etcdVersion (serverless.yml), which the test bed runs by default. */
export function defaultEtcdMinor() {
  const text = readFileSync(path.join(root, 'serverless.yml'), 'utf8');
  const minor = /^ {4}etcdVersion: '?(\d+\.\d+)\.\d+'?\s*$/m.exec(text)?.[1];
  if (!minor) throw new Error('serverless.yml has no params.default.etcdVersion of the form 3.6.16');
  return minor;
}

/** The build a selection names: "3.7", "3.7.3", "default" or nothing (the stack's default). */
export function resolveEtcd(selection, env = process.env) {
  const builds = etcdBuilds(env);
  const want = !selection || selection === 'default' ? defaultEtcdMinor() : selection;
  const hit = builds.find((b) => b.minor === want || b.version === want);
  if (!hit) {
    throw new Error(
      `etcd "${selection}" is not a version the test bed builds; choose one of ${builds.map((b) => `${b.minor} (${b.version})`).join(', ')} ` +
        `(${SELECTION_VARIABLE}, or the argument of scripts/etcd-build.mjs)`,
    );
  }
  return hit;
}

/** The build this process's environment selects (ETCD_AWS_ETCD_VERSION), default when unset. */
export function selectedEtcd(env = process.env) {
  return resolveEtcd(env[SELECTION_VARIABLE], env);
}

export function isBuilt(build) {
  return existsSync(path.join(build.home, 'complete')) && TOOLS.every((t) => existsSync(path.join(build.binDir, t)));
}

/** Runs a command, feeding each line of its stderr to `onLine`; rejects with its last lines when it fails. */
function run(command, args, options, onLine = () => undefined) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail = [];
    let partial = '';
    const take = (chunk) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 30) tail.shift();
        onLine(line);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.once('error', (error) => reject(new Error(`${command} could not start: ${error.message}`)));
    child.once('exit', (code) => {
      if (partial) tail.push(partial);
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} failed (exit ${code}):\n${tail.join('\n')}`));
    });
  });
}

/**
 * Progress of a long step: a spinner on a terminal; elsewhere (CI logs) a line per tenth of the work, and at
 * least one every 30 s.
 */
async function progress(label, intro) {
  if (process.stderr.isTTY) {
    const { default: ora } = await import('ora');
    process.stderr.write(`${intro}\n`);
    const spinner = ora({ text: label, stream: process.stderr }).start();
    return {
      update: (text) => (spinner.text = `${label}: ${text}`),
      done: (text) => spinner.succeed(`${label}: ${text}`),
      fail: () => spinner.fail(`${label}: failed`),
    };
  }
  let lastTenth = -1;
  let lastAt = Date.now();
  process.stderr.write(`etcd-build: ${intro}\n`);
  return {
    update: (text, fraction) => {
      const tenth = Math.floor((fraction ?? 0) * 10);
      if (tenth > lastTenth || Date.now() - lastAt > 30_000) {
        lastTenth = tenth;
        lastAt = Date.now();
        process.stderr.write(`etcd-build: ${label}: ${text}\n`);
      }
    },
    done: (text) => process.stderr.write(`etcd-build: ${label}: ${text}\n`),
    fail: () => process.stderr.write(`etcd-build: ${label}: failed\n`),
  };
}

function goVersion() {
  try {
    return execFileSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'go is not installed: the test bed builds etcd from its Go modules. Install Go 1.26 or newer ' +
        '(https://go.dev/doc/install), or put etcd builds where ETCD_AWS_CACHE_DIR points',
    );
  }
}

/** Builds one etcd release into its cache directory (staged, then renamed into place), unless it is there. */
export async function buildEtcd(build, { quiet = false } = {}) {
  if (isBuilt(build)) {
    if (!quiet) process.stderr.write(`etcd-build: etcd ${build.version} is built (${build.binDir})\n`);
    return build;
  }
  const go = goVersion();
  const started = Date.now();
  const staging = `${build.home}.building-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(path.join(staging, 'bin'), { recursive: true });
  const env = { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=readonly -buildvcs=false', GOWORK: 'off' };
  const options = { cwd: build.dir, env };
  const bar = await progress(
    `etcd ${build.version}`,
    `building etcd ${build.version} from its Go modules with ${go} into ${build.home} (once: later runs reuse it)`,
  );
  try {
    let modules = 0;
    bar.update('downloading modules through the Go module proxy', 0);
    await run('go', ['mod', 'download', '-x'], options, (line) => {
      if (line.includes('.zip')) bar.update(`downloading modules (${(modules += 1)})`, 0);
    });
    const listed = execFileSync('go', ['list', '-deps', './etcd', ...TOOL_PACKAGES], { ...options, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    const total = listed.split('\n').filter(Boolean).length;
    let compiled = 0;
    await run('go', ['build', '-v', '-trimpath', '-o', `${path.join(staging, 'bin')}/`, './etcd', ...TOOL_PACKAGES], options, (line) => {
      if (!/^[\w.\-/]+$/.test(line)) return;
      compiled += 1;
      bar.update(`compiling ${Math.min(compiled, total)}/${total} packages`, compiled / total);
    });
    for (const tool of TOOLS) {
      const out = execFileSync(path.join(staging, 'bin', tool), [tool === 'etcd' ? '--version' : 'version'], { encoding: 'utf8' });
      if (!out.includes(build.version)) throw new Error(`the built ${tool} does not report version ${build.version}:\n${out}`);
    }
    writeFileSync(path.join(staging, 'complete'), `${JSON.stringify({ version: build.version, go, builtAt: new Date().toISOString() })}\n`);
    rmSync(build.home, { recursive: true, force: true });
    renameSync(staging, build.home);
    bar.done(`done in ${Math.round((Date.now() - started) / 1000)} s`);
  } catch (error) {
    bar.fail();
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  // Builds of an older pin of the same minor are not needed any more.
  const parent = path.dirname(build.home);
  for (const name of readdirSync(parent)) {
    const full = path.join(parent, name);
    if (full !== build.home && name.startsWith(`${build.minor}.`) && !name.includes('.building-')) rmSync(full, { recursive: true, force: true });
  }
  return build;
}

async function main(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { quiet: { type: 'boolean' }, 'bin-dir': { type: 'string' }, list: { type: 'boolean' } },
  });
  if (values.list) {
    const fallback = defaultEtcdMinor();
    for (const b of etcdBuilds()) process.stdout.write(`${b.minor} ${b.version}${b.minor === fallback ? ' default' : ''}\n`);
    return;
  }
  if (values['bin-dir'] !== undefined) {
    const build = resolveEtcd(values['bin-dir']);
    if (!isBuilt(build)) throw new Error(`etcd ${build.version} is not built yet; run: node scripts/etcd-build.mjs ${build.minor}`);
    process.stdout.write(`${build.binDir}\n`);
    return;
  }
  const builds = positionals.length > 0 ? positionals.map((p) => resolveEtcd(p)) : etcdBuilds();
  for (const build of builds) await buildEtcd(build, { quiet: values.quiet });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error) => {
    process.stderr.write(`etcd-build: error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
