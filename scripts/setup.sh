#!/usr/bin/env bash
# Installs everything Viz needs on a fresh Debian 12 machine with Python 3.11; safe to re-run.
# System packages come from apt, Python packages into ./.venv, Cython extensions built in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_missing=()
# OpenSSL headers: viz/_fast links the token HMAC against libcrypto.
[ -f /usr/include/openssl/sha.h ] || apt_missing+=(libssl-dev)
# The browser of the end-to-end tests (Playwright drives Debian's Chromium; it cannot download
# its own here).
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
# Node.js builds and tests the tracker.
command -v npm >/dev/null 2>&1 || apt_missing+=(nodejs npm)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

# Reinstall only when the dependency declarations change.
stamp=.venv/.viz-deps
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel cython
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation -e '.[dev]'
  echo "$want" > "$stamp"
fi

# Cheap when nothing changed: recompiles only the .pyx files that did.
.venv/bin/python setup.py -q build_ext --inplace

# The tracker (served by viz-config): npm packages only when the lock file changed.
tracker_stamp=tracker/node_modules/.viz-lock
tracker_want=$(sha256sum tracker/package-lock.json | cut -d' ' -f1)
if [ ! -f "$tracker_stamp" ] || [ "$(cat "$tracker_stamp")" != "$tracker_want" ]; then
  echo "setup: installing tracker build tools (npm ci)"
  npm --prefix tracker ci --no-audit --no-fund --loglevel=error
  echo "$tracker_want" > "$tracker_stamp"
fi
npm --prefix tracker run --silent build
echo "setup: done"
