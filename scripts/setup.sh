#!/usr/bin/env bash
# Airqube set-up: makes a fresh Debian machine ready, then runs the main job. Safe to re-run.
#   1. Node 24 LTS from the npm registry when the machine's Node is older than 22
#   2. Debian packages: Docker engine, busybox-static, gcc, QEMU and a kernel for the micro-VM tier
#   3. npm packages (npm ci, under Node 24)
#   4. the Docker engine, started without any bridge network
#   5. the local images (no registry), the micro-VM init, and the compiled CLI
#   6. the main job (skip with AIRQUBE_SETUP_NO_DEMO=1)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1mairqube setup:\033[0m %s\n' "$*"; }

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 22 ]; then
  say "Node $(node -v 2>/dev/null || echo missing) is older than 22 (end-of-life); installing Node 24 LTS from the npm registry"
  npm install -g --force node@24 >/dev/null 2>&1 || { echo "could not install Node 24: run 'npm install -g --force node@24' by hand" >&2; exit 1; }
  hash -r
  say "now on Node $(node -v)"
fi

missing=()
need() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }
if command -v dpkg >/dev/null 2>&1; then
  need docker.io; need busybox-static; need gcc; need libc6-dev; need musl-tools; need qemu-system-x86; need cpio; need util-linux; need iproute2; need nftables; need mmdebstrap; need docker-registry; need runsc; need chromium
  ls /boot/vmlinuz-*-cloud-amd64 >/dev/null 2>&1 || missing+=(linux-image-cloud-amd64)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      say "installing Debian packages: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
      exit 1
    fi
  fi
else
  say "not a Debian machine: make sure Docker, busybox (static), gcc, QEMU and a Linux kernel image are installed"
fi

lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)-$(node -v)
if [ "$(cat node_modules/.airqube-lock 2>/dev/null)" != "$lock_sum" ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.airqube-lock
else
  say "npm packages are up to date"
fi

bash scripts/docker-engine.sh start
say "building local images and the micro-VM init"
npm run --silent images
# airqube/python and airqube/pdf from Debian's packages (about a minute each on an idle machine; skipped when built)
npm run --silent images:debian -- --if-missing
npm run --silent build:vm
say "compiling the CLI (dist/)"
npm run --silent build

if [ "${AIRQUBE_SETUP_NO_DEMO:-0}" != 1 ]; then
  say "running the main job"
  bash scripts/main-job.sh
fi
say "done. Run the tests with: npm test"
