#!/usr/bin/env bash
# Creates (once) the bench-only virtualenv with the replaced service's stack from PyPI
# (bench/baseline/requirements.txt) under target/bench-venv, and prints its python on stdout.
# target/ is git-ignored: the venv is never committed and nothing but the benchmark uses it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/target/bench-venv"
reqs="$root/bench/baseline/requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! cmp -s "$reqs" "$venv/.requirements"; then
  echo "bench/baseline/venv.sh: installing $reqs into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" >&2
  cp "$reqs" "$venv/.requirements"
fi
echo "$venv/bin/python"
