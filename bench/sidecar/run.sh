#!/usr/bin/env bash
# Sidecar benchmarks on a local real kube-apiserver (see BENCHMARKS.md, "## Sidecar").
#
# Builds the stripped release binary, then runs the driver (sidecar/examples/bench.rs), which
# starts a private etcd + kube-apiserver, runs the binary as the ServiceAccount of k8s/base/rbac.yaml
# and prints one Markdown table row per figure.
#
# Needs KUBE_TESTBIN (dir with kube-apiserver and etcd); falls back to tools/build-testbin.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

export KUBE_TESTBIN="${KUBE_TESTBIN:-$(tools/build-testbin.sh)}"
cargo build --release -p bmh-sidecar --bin bmh-sidecar
export SIDECAR_BIN="${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/bmh-sidecar}"
echo "binary: $SIDECAR_BIN ($(stat -c %s "$SIDECAR_BIN") bytes)" >&2
# The driver itself is a debug build: it only measures from the outside.
cargo run -q -p bmh-sidecar --example bench
