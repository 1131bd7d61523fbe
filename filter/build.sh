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
raw="${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip1/wasm-release/webhook_filter.wasm"
# wasm-opt's output is cached outside the repository by the hash of its input, its flags and its
# version (a fresh checkout of the same source skips it; the newest 8 are kept).
opt_flags=(--enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int
  --enable-mutable-globals --enable-simd --strip-debug -O3)
opt_cache=${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/wasm-opt
mkdir -p "$opt_cache"
build() { # $1 = output name, rest = extra cargo arguments
  local name=$1 out="$root/out/$1"; shift
  cargo build --quiet --locked -p webhook-filter --profile wasm-release --target wasm32-wasip1 "$@" >&2
  local key
  key=$({ sha256sum < "$raw"; echo "${opt_flags[*]}"; wasm-opt --version; } | sha256sum | cut -c1-32)
  if [ ! -f "$opt_cache/$key.wasm" ]; then
    wasm-opt "${opt_flags[@]}" "$raw" -o "$opt_cache/$key.tmp"
    mv "$opt_cache/$key.tmp" "$opt_cache/$key.wasm"
  fi
  touch "$opt_cache/$key.wasm"
  cp "$opt_cache/$key.wasm" "$out.tmp"
  mv "$out.tmp" "$out"
  echo "filter/build.sh: $name: $(stat -c %s "$raw") B from cargo, $(stat -c %s "$out") B after wasm-opt" >&2
}
build webhook_filter_jsonschema.wasm --features json-schema
build webhook_filter.wasm
# shellcheck disable=SC2012  # names are hex digests
ls -t "$opt_cache"/*.wasm 2>/dev/null | tail -n +9 | xargs -r rm -f
echo "$root/out/webhook_filter.wasm"
