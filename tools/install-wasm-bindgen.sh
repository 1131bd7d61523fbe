#!/usr/bin/env bash
# Installs wasm-bindgen-test-runner (from wasm-bindgen-cli) at exactly the wasm-bindgen version in
# Cargo.lock, into a cache outside the repository. Prints the bin directory on stdout.
# `--locked` is deliberately absent: the CLI's own lockfile pins crates newer than crates.io serves.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")
[ -n "$version" ] || { echo "install-wasm-bindgen: wasm-bindgen not found in Cargo.lock" >&2; exit 1; }
dest=${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/wasm-bindgen-$version
if [ ! -x "$dest/bin/wasm-bindgen-test-runner" ]; then
  echo "install-wasm-bindgen: installing wasm-bindgen-cli $version (first run only, ~3 min)" >&2
  cargo install --quiet --root "$dest" wasm-bindgen-cli --version "$version" >&2
fi
echo "$dest/bin"
