#!/usr/bin/env bash
# CPU per request of each process on the webhook path (BENCHMARKS.md, "## Filter: CPU per
# request"). Builds what it needs, then runs bench/cpu/bench.py (its docstring says what is
# measured and how).
#
# Usage: bench/cpu/run.sh [DURATION=10] [ROUNDS=3]
#   env BENCH_GROUPS="stages path"   which groups of variants (stages: the filter stage by stage in
#                              front of a direct-response Envoy; path: the whole path against
#                              the replaced stack and bmh-sidecar)
#       CONNECTIONS=8          wrk connections
#       VARIANTS="a b ..."     only these variants (names as printed)
#       COMPARE_WASM=path      one more artifact in the shipped arrangement (e.g. a previous
#                              build), interleaved with the others
#       COMPARE_BENCH_WASM=path   that build's benchmark artifact: its stages too
#       COMPARE_PLUGIN_CONFIG=json  the plugin configuration the compared build reads (default:
#                              today's; a build older than the `preset` needs its own)
#       OUT_JSON=path          raw figures
# Uses ENVOY_BIN / FILTER_WASM / KUBE_TESTBIN / SIDECAR_BIN / KUBE_TESTBENCH if set, else tools/envoy-venv.sh,
# filter/build.sh, tools/build-testbin.sh. Needs wrk, wasm-opt, python3 (stdlib); the baseline's
# FastAPI stack is installed from PyPI into target/bench-venv (bench/baseline/venv.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DURATION=${1:-${DURATION:-10}} ROUNDS=${2:-${ROUNDS:-3}}
export BENCH_GROUPS=${BENCH_GROUPS:-stages path}

export ENVOY_BIN=${ENVOY_BIN:-$(tools/envoy-venv.sh)}
export FILTER_WASM=${FILTER_WASM:-$(filter/build.sh)}
# The benchmark artifact: the same filter with the stage switch (feature bench-stages), built
# and optimised like the shipped one (filter/build.sh), kept apart from it.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="${CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS:--C target-feature=+simd128}"
cargo build --quiet --locked -p webhook-filter --profile wasm-release --target wasm32-wasip1 \
  --features bench-stages >&2
export BENCH_WASM="$root/out/webhook_filter_bench.wasm"
wasm-opt --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-mutable-globals --enable-simd --strip-debug -O3 \
  "${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip1/wasm-release/webhook_filter.wasm" -o "$BENCH_WASM"
cargo build --quiet --locked -p envoy-harness --bin render-envoy-config >&2
export RENDER="${CARGO_TARGET_DIR:-$root/target}/debug/render-envoy-config"
if [[ " $BENCH_GROUPS " == *" path "* ]]; then
  export KUBE_TESTBIN=${KUBE_TESTBIN:-$(tools/build-testbin.sh)}
  if [ -z "${SIDECAR_BIN:-}" ]; then
    cargo build --quiet --locked --release -p bmh-sidecar --bin bmh-sidecar >&2
    export SIDECAR_BIN="${CARGO_TARGET_DIR:-$root/target}/release/bmh-sidecar"
  fi
  if [ -z "${KUBE_TESTBENCH:-}" ]; then
    cargo build --quiet --locked -p kube-harness --bin kube-testbench >&2
    export KUBE_TESTBENCH="${CARGO_TARGET_DIR:-$root/target}/debug/kube-testbench"
  fi
  export BASELINE_PYTHON=$(bench/baseline/venv.sh)
fi
echo "bench/cpu: $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "shipped .wasm: $(stat -c %s "$FILTER_WASM") B ($FILTER_WASM)"
python3 bench/cpu/bench.py
