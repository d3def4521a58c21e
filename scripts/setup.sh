#!/usr/bin/env bash
# Installs what the tests and the sandbox need, idempotently, on Debian/Ubuntu:
#   - npm packages (npm ci) when node_modules is missing or older than package-lock.json
#   - etcd server and client from apt (etcd-server, etcd-client) when etcd or etcdctl is missing
#   - the Python virtualenv .venv with moto (AWS emulator) and cfn-lint, pinned in requirements-dev.txt
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

# npm packages.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
else
  ok "npm packages are installed"
fi

# etcd from Debian's packages.
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  command -v apt-get >/dev/null || die "etcd is missing and apt-get is not available; install etcd 3.4+ (etcd, etcdctl) on PATH"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "etcd is missing; run as root or install etcd-server and etcd-client yourself"
    sudo="sudo"
  fi
  say "installing etcd-server and etcd-client with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server etcd-client >/dev/null
else
  ok "etcd $(etcd --version | head -n1 | awk '{print $3}') is installed"
fi

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
