#!/usr/bin/env bash
# Installs callstream from nothing: system packages (Debian/Ubuntu, when missing and when
# we can), then the exact Python versions of the lock file into ./.venv.
#
#   bash install.sh            the service (requirements.lock) into ./.venv
#   bash install.sh --test     the service and the test tools (requirements-test.lock)
#   bash install.sh --latest   the newest versions pyproject.toml allows, with the test
#                              tools, into ./.venv-latest (the lock is not used): drift is
#                              found on purpose, by `.venv-latest/bin/python -m pytest`
#   bash install.sh --lock     regenerates both lock files from pyproject.toml (uv)
#
# The lock files pin every package with its hashes; pyproject.toml keeps the ranges.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-}"
case "$mode" in
  "" | --test | --latest | --lock) ;;
  *) echo "install.sh: unknown option '$mode' (use --test, --latest or --lock)" >&2; exit 2 ;;
esac

UV_VERSION=0.13.9  # the lock tool, pinned so that the same inputs give the same lock

if [ "$mode" = "--lock" ]; then
  # Both locks are universal (any platform, Python >= 3.11) and carry hashes. setuptools is
  # locked too: the package is built without build isolation, from the locked setuptools.
  # The service's lock is constrained by the test lock, so both pin the same versions.
  [ -x .venv-tools/bin/uv ] || { python3 -m venv .venv-tools && .venv-tools/bin/pip install -q "uv==$UV_VERSION"; }
  compile=(.venv-tools/bin/uv pip compile pyproject.toml - --universal --python-version 3.11
           --generate-hashes --no-header --quiet)
  printf 'setuptools>=77\n' | "${compile[@]}" --extra test -o requirements-test.lock
  printf 'setuptools>=77\n' | "${compile[@]}" -c requirements-test.lock -o requirements.lock
  echo "wrote requirements-test.lock and requirements.lock; run: bash install.sh --test && .venv/bin/python -m pytest"
  exit 0
fi

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v gcc >/dev/null || need_apt+=(gcc python3-dev)
# The Azure Speech SDK's system libraries (used when CALLSTREAM_STT=azure).
for lib in libssl3 libuuid1 ca-certificates; do
  dpkg -s "$lib" >/dev/null 2>&1 || need_apt+=("$lib")
done
if [ -n "$mode" ]; then
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
  # Real human recordings and sox: tests/fixtures/make_phone_fixtures.py makes the
  # telephone fixtures from them (tests/test_speech_telephone.py checks it reproduces the
  # committed files; every other test uses the committed files).
  [ -d /usr/share/pocketsphinx/test/data ] || need_apt+=(pocketsphinx-testdata)
  command -v sox >/dev/null || need_apt+=(sox)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "install.sh: please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi

# pip is the one in the venv (Python's own, not upgraded): every package it installs is
# pinned and hash-checked by the lock, and the project itself is built from the locked
# setuptools without build isolation, so nothing unpinned is fetched.
if [ "$mode" = "--latest" ]; then
  venv=.venv-latest
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade "setuptools>=77"
  "$venv/bin/pip" install -q --upgrade --upgrade-strategy eager -e ".[test]"
  "$venv/bin/pip" list --format=freeze 2>/dev/null >"$venv/versions.txt"
  echo "newest allowed versions installed in $(pwd)/$venv (list: $venv/versions.txt)"
  echo "run the tests on them: $venv/bin/python -m pytest"
  exit 0
fi

lock=requirements.lock
[ "$mode" = "--test" ] && lock=requirements-test.lock
python3 -m venv --clear .venv  # a second run gives the same venv, not an upgrade of the last
.venv/bin/pip install -q --require-hashes --no-deps -r "$lock"
.venv/bin/pip install -q --no-deps --no-build-isolation -e .
# The venv's own pip check: the lock is complete and consistent for this platform.
.venv/bin/pip check >/dev/null || { echo "install.sh: the installed packages do not fit together:" >&2; .venv/bin/pip check >&2; exit 1; }
echo "callstream $(.venv/bin/callstream --version 2>/dev/null | awk '{print $2}') installed in $(pwd)/.venv"
echo "activate it to have \`callstream\` on PATH: source .venv/bin/activate"
