#!/usr/bin/env bash
# Builds the release filter artifacts and prints the default one's path on stdout:
#   out/webhook_filter.wasm             the default filter (every scheme, replay cache)
#   out/webhook_filter_jsonschema.wasm  the same plus `schema: {"json_schema": ...}` (feature
#                                       `json-schema`: the validator and its regex engines more
#                                       than double the size, see BENCHMARKS.md)
# Each: cargo build -p webhook-filter --profile wasm-release --target wasm32-wasip1
#       then wasm-opt -O3 (binaryen 108 needs the feature flags below; SIMD is used by
#       jsonschema's dependencies, and V8 runs it).
# -O3 rather than -Oz: the filter runs on every request and speed matters more than ~60 KB.
# SIMD (`+simd128`): sha2's wasm SIMD backend computes the HMAC ~35 % faster in V8 than its
# portable code (bench/cpu/wasm-stages.sh); Envoy's and Istio's V8 run wasm SIMD.
# The debug sections are stripped before -O3, which then leaves ~0.8 KB less than after it.
set -euo pipefail
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="${CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS:--C target-feature=+simd128}"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v wasm-opt >/dev/null || { echo "filter/build.sh: wasm-opt not found (apt-get install binaryen)" >&2; exit 1; }
mkdir -p "$root/out"
raw="$root/target/wasm32-wasip1/wasm-release/webhook_filter.wasm"
build() { # $1 = output name, rest = extra cargo arguments
  local name=$1 out="$root/out/$1"; shift
  cargo build --quiet --locked -p webhook-filter --profile wasm-release --target wasm32-wasip1 "$@" >&2
  # wasm-opt takes a while on the 4 MB variant: skip it when cargo's output did not change.
  if ! { [ -f "$out" ] && cmp -s "$raw" "$out.src"; }; then
    wasm-opt --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
      --enable-mutable-globals --enable-simd --strip-debug -O3 "$raw" -o "$out.tmp"
    cp "$raw" "$out.src"
    mv "$out.tmp" "$out"
  fi
  echo "filter/build.sh: $name: $(stat -c %s "$raw") B from cargo, $(stat -c %s "$out") B after wasm-opt" >&2
}
build webhook_filter_jsonschema.wasm --features json-schema
build webhook_filter.wasm
echo "$root/out/webhook_filter.wasm"
