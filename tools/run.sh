#!/usr/bin/env bash
# `make run`: builds what is needed and starts the whole system (tests/e2e/src/bin/devstack.rs).
# Without KUBECONFIG: a local kube-apiserver with sample BareMetalHosts and a SIMULATED Metal3.
# With KUBECONFIG (namespace K8S_NAMESPACE): your cluster and its real Metal3.
# Envoy listens on PORT (5001); WEBHOOK_SECRET defaults to a development value it prints.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(tools/bootstrap.sh)"
FILTER_WASM=$(filter/build.sh)
export FILTER_WASM
cargo build --locked -p bmh-sidecar -p e2e --bin bmh-sidecar --bin devstack
export SIDECAR_BIN="$root/target/debug/bmh-sidecar"
exec "$root/target/debug/devstack"
