#!/usr/bin/env bash
# Installs callstream into ./.venv from nothing: system packages (Debian/Ubuntu, when
# missing and when we can), then the Python package. `--test` adds the test extra.
set -euo pipefail
cd "$(dirname "$0")"

extra=""
[ "${1:-}" = "--test" ] && extra="[test]"

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v gcc >/dev/null || need_apt+=(gcc python3-dev)
# The Azure Speech SDK's system libraries (used when CALLSTREAM_STT=azure).
for lib in libssl3 libuuid1 ca-certificates; do
  dpkg -s "$lib" >/dev/null 2>&1 || need_apt+=("$lib")
done
if [ -n "$extra" ]; then
  # PostgreSQL server binaries: the tests start a real server for the PostgreSQL store
  # (tests/pg_server.py); production points CALLSTREAM_STORE at its own server.
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
  # A browser for the agent console's test (tests/test_console.py drives Debian's
  # chromium headless with Playwright; no browser is ever downloaded).
  command -v chromium >/dev/null || need_apt+=(chromium)
  # Redis server binary: the tests start real Redis servers for the Redis Streams bus and
  # the call registry (tests/redis_server.py); production points CALLSTREAM_BUS at its own.
  command -v redis-server >/dev/null || need_apt+=(redis-server)
  # kustomize for tests/test_k8s_manifests.py: Debian's kubectl (`kubectl kustomize`);
  # a kustomize or kubectl already on PATH is used instead.
  command -v kustomize >/dev/null || command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".${extra}"
echo "callstream installed in $(pwd)/.venv"
