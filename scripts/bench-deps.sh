#!/usr/bin/env bash
# System tools the service benchmarks need (nginx for the empty-204 ceiling, gcc/make for the
# load generator, taskset from util-linux); safe to re-run. Python packages come from setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-deps: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  # The Debian nginx package may start a system nginx on port 80: stop and disable it, the
  # benchmark runs its own foreground instance (config in a temp dir) on a free port.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

make -s -C bench/loadgen
echo "bench-deps: done"
