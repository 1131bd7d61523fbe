#!/usr/bin/env bash
# The one test command (`make test`): installs what is missing, checks formatting and lints for
# the native and wasm32 builds, builds the filter artifact, then runs every test tier:
#   core unit tests natively and under wasm-bindgen-test in Node, the filter inside a real Envoy,
#   the sidecar against a real kube-apiserver + etcd, the end-to-end tests, the Istio tier
#   (istiod + istio-agent driving Envoy from the shipped WasmPlugin) and the reservation tier
#   (the real reservation-be and event processor against it all).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*" >&2; }

step "bootstrap"
# Captured first: `eval "$(...)"` would carry on with no exports when bootstrap fails (e.g. a
# missing baremetal-operator or Istio build under CI=true).
exports=$(tools/bootstrap.sh)
eval "$exports"

step "format and lints (native, wasm32-wasip1, wasm32-unknown-unknown)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p webhook-core -p webhook-filter --target wasm32-wasip1 --locked -- -D warnings
cargo clippy -p webhook-core --all-targets --target wasm32-unknown-unknown --locked -- -D warnings

# One native build for every test binary and the sidecar they start (the workspace's features
# unified once: a separate `cargo build -p bmh-sidecar` would compile tokio, hyper and kube a
# second time with other features).
step "build the filter artifact, the native tests and the sidecar binary"
FILTER_WASM=$(filter/build.sh)
export FILTER_WASM
cargo test --workspace --locked --no-run
export SIDECAR_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/bmh-sidecar"

# --- images (make images): built before the native tests, which check the archives ---
step "images: OCI archives in out/images, deployable manifests in out/deploy"
tools/build-images.sh
# --- end of images ---
# The Istio tier (tests/e2e/tests/istio.rs, in the native tests below) reads out/images and
# out/deploy/istio-gateway: istiod and istio-agent (ISTIO_TESTBIN, tools/build-istio.sh) pull
# the filter image from a loopback registry and drive Envoy with it.

step "core tests under wasm-bindgen-test (wasm32-unknown-unknown, Node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$WASM_BINDGEN_DIR/wasm-bindgen-test-runner" \
  cargo test -p webhook-core --target wasm32-unknown-unknown --locked

# --- fuzzing -----------------------------------------------------------------------------
# Bounded: FUZZ_SECONDS (20) per target, 5 targets, so about 100 s of fuzzing plus the build
# (nightly, cached outside the repository; docs/testing.md). A crash fails the run.
step "fuzz the filter core: ${FUZZ_SECONDS:-20} s per target"
tools/fuzz.sh "${FUZZ_SECONDS:-20}"
# --- end of fuzzing -----------------------------------------------------------------------

# The reservation tier (tests/reservation-harness, ~8 min, its scenarios concurrently) is part
# of it: it reads RESERVATION_* (jars), BMO_*, KUBE_TESTBIN, ENVOY_BIN, FILTER_WASM, SIDECAR_BIN.
step "all native tests: unit, Envoy, real kube-apiserver, end to end, reservation tier"
cargo test --workspace --locked
