#!/usr/bin/env bash
# Installs what the tests and the sandbox need, idempotently, on Debian/Ubuntu:
#   - npm packages (npm ci) when node_modules is missing or older than package-lock.json
#   - etcd, etcdctl and etcdutl of every supported etcd version, built with Go from etcd's modules (scripts/etcd-build.mjs)
#   - the Python virtualenv .venv with moto (AWS emulator) and cfn-lint, pinned in requirements-dev.txt
#   - iptables and iproute2 (tc) from Debian's packages, for the test bed's network faults (testbed/net-faults.ts)
# Usage: bash scripts/setup.sh [--quiet]   (--quiet prints only what it installs)
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=false
[[ "${1:-}" == "--quiet" ]] && quiet=true
say() { echo "setup: $*"; }
ok() { $quiet || say "$*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

# Node.js >= 20.19 (vitest 4, osls, ESM require of Powertools).
node_version=$(node -p 'process.versions.node' 2>/dev/null) || die "node is not installed; install Node.js 20.19 or newer"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || die "Node.js $node_version is too old; install Node.js 20.19 or newer"

# Network faults between simulated instances: iptables (cgroup match, CLASSIFY) and tc (htb on lo). Root only,
# as the faults themselves are.
missing=()
command -v iptables >/dev/null || missing+=(iptables)
command -v tc >/dev/null || missing+=(iproute2)
# The security test makes a user's key and CSR with openssl, as the README tells users to.
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]} > 0)); then
  [[ $(id -u) == 0 ]] || die "${missing[*]} missing and not root: install them (apt-get install ${missing[*]}); the network-fault tests need root anyway"
  command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get: install them with this system's package manager"
  say "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
else
  ok "iptables and tc are installed"
fi

# npm packages.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
else
  ok "npm packages are installed"
fi

# etcd: every supported version, built from etcd's Go modules (testbed/etcd-builds/), cached per pinned version
# outside the work tree. The test bed runs the stack's default unless ETCD_AWS_ETCD_VERSION picks another; the
# upgrade scenario runs all of them.
command -v go >/dev/null || die "go is not installed: the test bed builds etcd from its Go modules; install Go 1.26 or newer (https://go.dev/doc/install)"
if $quiet; then node scripts/etcd-build.mjs --quiet; else node scripts/etcd-build.mjs; fi

# Python virtualenv with the AWS emulator and cfn-lint.
stamp=.venv/.requirements-dev.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  command -v python3 >/dev/null || die "python3 is missing; install python3 and python3-venv"
  say "creating .venv with moto and cfn-lint (requirements-dev.txt)"
  python3 -m venv .venv || die "python3 -m venv failed; install python3-venv"
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" >"$stamp"
else
  ok "Python tools are installed in .venv"
fi
