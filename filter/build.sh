#!/usr/bin/env bash
# Builds the release filter artifact and prints its path on stdout:
#   cargo build -p webhook-filter --profile wasm-release --target wasm32-wasip1
#   wasm-opt -O3 (binaryen; version 108 needs the feature flags below) -> out/webhook_filter.wasm
# -O3 rather than -Oz: the filter runs on every request and speed matters more than ~60 KB.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --quiet --locked -p webhook-filter --profile wasm-release --target wasm32-wasip1 >&2
raw="$root/target/wasm32-wasip1/wasm-release/webhook_filter.wasm"
out="$root/out/webhook_filter.wasm"
mkdir -p "$root/out"
command -v wasm-opt >/dev/null || { echo "filter/build.sh: wasm-opt not found (apt-get install binaryen)" >&2; exit 1; }
wasm-opt --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-mutable-globals -O3 --strip-debug "$raw" -o "$out.tmp"
mv "$out.tmp" "$out"
echo "filter/build.sh: $(stat -c %s "$raw") B from cargo, $(stat -c %s "$out") B after wasm-opt" >&2
echo "$out"
